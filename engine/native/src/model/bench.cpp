#include "bench.h"

#include <chrono>
#include <cmath>

#include "common/memory.h"
#include "kernels/gemm.h"
#include "kernels/nf4.h"

namespace ls {

double bench_linear_forward(int64_t tokens, int64_t out, int64_t in, DType dtype, int iterations) {
  const int64_t n = out * in;
  Buffer<float> x(MemCategory::Workspace, size_t(tokens * in)), y(MemCategory::Workspace, size_t(tokens * out));
  Buffer<float> w32(MemCategory::Workspace, size_t(n));
  uint32_t s = 12345;
  auto next = [&] { s = s * 1664525u + 1013904223u; return float(int32_t(s >> 8) - (1 << 23)) / float(1 << 23); };
  for (size_t i = 0; i < x.size(); ++i) x[i] = next();
  for (size_t i = 0; i < w32.size(); ++i) w32[i] = 0.05f * next();
  Buffer<uint16_t> wbf;
  Buffer<uint8_t> packed, codes;
  Buffer<float> scale;
  WeightRef W;
  W.dtype = dtype;
  W.out = out;
  W.in = in;
  if (dtype == DType::BF16) {
    wbf = Buffer<uint16_t>(MemCategory::Workspace, size_t(n));
    for (int64_t i = 0; i < n; ++i) wbf[size_t(i)] = f32_to_bf16(w32[size_t(i)]);
    W.bf16 = wbf.data();
  } else if (dtype == DType::NF4) {
    const int64_t blocks = n / kNf4BlockSize;
    packed = Buffer<uint8_t>(MemCategory::Workspace, size_t(n / 2));
    codes = Buffer<uint8_t>(MemCategory::Workspace, size_t(blocks));
    scale = Buffer<float>(MemCategory::Workspace, size_t((blocks + kNf4AbsmaxBlock - 1) / kNf4AbsmaxBlock));
    Buffer<float> absmax(MemCategory::Workspace, size_t(blocks));
    nf4_quantize_blocks(w32.data(), n, packed.data(), absmax.data());
    float mean = 0;
    nf4_double_quantize(absmax.data(), blocks, codes.data(), scale.data(), &mean);
    W.nf4.rows = out;
    W.nf4.cols = in;
    W.nf4.packed = packed.data();
    W.nf4.absmax_q = codes.data();
    W.nf4.absmax_scale = scale.data();
    W.nf4.absmax_mean = mean;
  } else {
    W.dtype = DType::F32;
    W.f32 = w32.data();
  }
  linear_forward(W, x.data(), tokens, y.data(), false);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; ++i) linear_forward(W, x.data(), tokens, y.data(), false);
  auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double>(t1 - t0).count() / iterations;
}

}  // namespace ls
