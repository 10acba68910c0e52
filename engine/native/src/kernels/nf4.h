// NF4 (4-bit NormalFloat) with double quantization, as defined by the QLoRA
// paper (Dettmers et al. 2023, arXiv 2305.14314, section 3) and bitsandbytes.
//
// Scheme (record of exactly what is stored):
//   * The weight matrix W [rows, cols] is taken in row-major order and cut into
//     blocks of kNf4BlockSize = 64 consecutive values (rows*cols must be a
//     multiple of 64; every supported model dimension is).
//   * absmax[b] = max |w| over block b (fp32). Each w is multiplied by
//     1 / max(absmax[b], 1e-38), clamped to [-1, 1] and mapped to the index of
//     the nearest of the 16 code values kNf4Code; a value exactly on a midpoint
//     (c_i + c_{i+1}) / 2 (fp32) takes the LOWER index (bitsandbytes' CPU path,
//     torch.bucketize; its CUDA decision tree uses other thresholds).
//     Two 4-bit indices share a byte: the first (even) element in the HIGH
//     nibble, the second in the low nibble (bitsandbytes' packing).
//   * Double quantization (bitsandbytes' compress_statistics): the fp32
//     absmax values, less their mean `absmax_mean` (torch's fp32 sum order,
//     see nf4.cpp), are cut into blocks of kNf4AbsmaxBlock = 256; each block
//     stores one fp32 scale (its max |value|) and each value a uint8 index into
//     bitsandbytes' signed dynamic 8-bit code (create_dynamic_map(signed=True))
//     found as bitsandbytes' CPU kernel does: through a 65536-point lookup grid
//     over [-1, 1] (the nearest code of the nearest grid point, which near 0 is
//     not always the nearest code). Cost: 4 + 8/64 + 32/(64*256) = 4.127
//     bits/weight.
//   * Dequantize: w = kNf4Code[idx] * (kDynamicCode[q] * scale[b/256] + mean),
//     the product and the sum rounded separately (no fused multiply-add).
// nf4.cpp's top comment records each step; tests/native/test_nf4.cpp checks
// them bit for bit against bitsandbytes' output.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ls {

constexpr int kNf4BlockSize = 64;
constexpr int kNf4AbsmaxBlock = 256;

// The 16 NF4 code values (normal quantiles normalised to [-1, 1]; 0 is exact).
extern const float kNf4Code[16];
// bitsandbytes' signed dynamic 8-bit code (256 values in [-1, 1], sorted).
extern const float kDynamicCode[256];

// Storage of one NF4 tensor; pointers are owned elsewhere (see model code).
struct Nf4Tensor {
  int64_t rows = 0, cols = 0;     // logical shape [rows, cols]
  const uint8_t* packed = nullptr;  // [rows*cols/2]
  const uint8_t* absmax_q = nullptr; // [rows*cols/64] dynamic-code indices of absmax - mean
  const float* absmax_scale = nullptr; // [ceil(nblocks/256)]
  float absmax_mean = 0.f;
};

// Index of the nearest NF4 code to x in [-1, 1].
uint8_t nf4_nearest(float x);

// First level: w[n] (n % 64 == 0) -> packed[n/2], absmax[n/64].
void nf4_quantize_blocks(const float* w, int64_t n, uint8_t* packed, float* absmax);
// Second level: absmax[nblocks] -> absmax_q[nblocks], scale[ceil(nblocks/256)], mean.
void nf4_double_quantize(const float* absmax, int64_t nblocks, uint8_t* absmax_q,
                         float* scale, float* mean);
// Recover the first-level absmax values from the double-quantized form.
void nf4_absmax_dequantize(const uint8_t* absmax_q, const float* scale, float mean,
                           int64_t nblocks, float* absmax);
// Full dequantize of elements [begin, end) (multiples of 64) to fp32.
void nf4_dequantize(const Nf4Tensor& t, int64_t begin, int64_t end, float* out);

}  // namespace ls
