// NF4 quantization with double quantization, bit-compatible with bitsandbytes
// 0.50 on the CPU: quantize_4bit(w, blocksize=64, compress_statistics=True,
// quant_type="nf4") and dequantize_4bit. What bitsandbytes actually computes
// there (read from its torch fallback ops, its C++ CPU kernels and torch's sum
// kernel, and checked against it bit for bit by tests/native/test_nf4.cpp):
//
//   First level (bitsandbytes' "default" torch op, blocks of 64):
//     absmax[b] = max |w| over the block
//     s = clamp(w * (1 / max(absmax[b], 1e-38f)), -1, 1)      (fp32; reciprocal,
//                                                             then multiply)
//     idx = number of NF4 midpoints m_i < s, m_i = (c_i + c_{i+1}) / 2 in fp32
//           (torch.bucketize): a value exactly on a midpoint takes the LOWER
//           index. Packed two per byte, even element in the high nibble.
//   Second level (compress_statistics):
//     mean = torch's fp32 mean of absmax: its cascade sum (SumKernel.cpp) with
//            8-lane vector partial sums, as torch runs it on one thread, then
//            divided by float(nblocks). (For more than 32768 blocks torch splits
//            the sum across its threads, so bitsandbytes' own offset then
//            depends on torch's thread count; ours is the one-thread value.)
//     c = absmax - mean, cut into blocks of 256; per block
//       scale = max |c| (if 0: every index is 0)
//       v = clamp(c * (1 / scale), -1, 1)
//       idx = LUT[(uint16)(int)fma((v + 1) * 0.5, 65535, 0.5)]
//     where LUT[65536] holds, for the grid point g_i = 2i/65535 - 1, the number
//     of dynamic-code midpoints (kDynamicCode[j] + kDynamicCode[j+1]) * 0.5
//     that are < g_i. So the 8-bit index is the nearest code of the nearest grid
//     point, not always the nearest code of v (bitsandbytes' quantize_cpu LUT).
//   Dequantize:
//     absmax'[b] = (kDynamicCode[q[b]] * scale[b/256]) + mean  (two roundings)
//     w' = kNf4Code[idx] * absmax'[b]
//
// kDynamicCode is create_dynamic_map(signed=True) exactly: 127 negative
// values from -0.99296875 up, 0 at index 127, 127 positive values and 1.0 at
// index 255 (no padding is needed for 8 bits; the table is sorted).
#include "nf4.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "../common/threads.h"
#include "gemm_internal.h"

namespace ls {

const float kNf4Code[16] = {
    -1.0f,          -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
};

const float kDynamicCode[256] = {
    -0.992968738f, -0.978906274f, -0.96484375f, -0.950781226f, -0.936718762f, -0.922656238f,
    -0.908593774f, -0.89453125f, -0.880468726f, -0.866406262f, -0.852343738f, -0.838281274f,
    -0.82421875f, -0.810156226f, -0.796093762f, -0.782031238f, -0.767968774f, -0.75390625f,
    -0.739843726f, -0.725781262f, -0.711718798f, -0.697656274f, -0.68359375f, -0.669531226f,
    -0.655468762f, -0.641406298f, -0.627343774f, -0.61328125f, -0.599218726f, -0.585156262f,
    -0.571093798f, -0.557031274f, -0.54296875f, -0.528906226f, -0.514843702f, -0.500781238f,
    -0.486718714f, -0.47265625f, -0.458593726f, -0.444531262f, -0.430468738f, -0.416406244f,
    -0.40234375f, -0.388281226f, -0.374218762f, -0.360156238f, -0.346093744f, -0.33203125f,
    -0.317968726f, -0.303906262f, -0.289843738f, -0.275781274f, -0.26171875f, -0.247656241f,
    -0.233593747f, -0.219531253f, -0.205468744f, -0.19140625f, -0.177343756f, -0.163281247f,
    -0.149218753f, -0.135156244f, -0.12109375f, -0.107031256f, -0.0985937491f, -0.0957812592f,
    -0.0929687545f, -0.0901562497f, -0.0873437524f, -0.0845312476f, -0.0817187577f, -0.078906253f,
    -0.0760937482f, -0.0732812509f, -0.0704687461f, -0.0676562563f, -0.0648437515f, -0.0620312504f,
    -0.0592187531f, -0.0564062484f, -0.053593751f, -0.05078125f, -0.047968749f, -0.0451562516f,
    -0.0423437469f, -0.0395312496f, -0.0367187522f, -0.0339062512f, -0.0310937501f, -0.028281251f,
    -0.0254687499f, -0.0226562507f, -0.0198437516f, -0.0170312505f, -0.0142187504f, -0.0114062503f,
    -0.00971874967f, -0.00915624946f, -0.00859375019f, -0.00803124998f, -0.00746874977f,
    -0.00690625003f, -0.00634374982f, -0.00578125007f, -0.00521875033f, -0.00465624966f,
    -0.00409374991f, -0.00353124971f, -0.00296874996f, -0.00240624999f, -0.00184375001f,
    -0.00128124992f, -0.000943750085f, -0.000831249985f, -0.00071875006f, -0.000606250076f,
    -0.000493750034f, -0.000381250022f, -0.000268750038f, -0.000156250011f, -8.87499991e-05f,
    -6.62500024e-05f, -4.37499984e-05f, -2.12499981e-05f, -7.7499999e-06f, -3.25000019e-06f,
    -5.50000038e-07f, 0.0f, 5.50000038e-07f, 3.25000019e-06f, 7.7499999e-06f, 2.12499981e-05f,
    4.37499984e-05f, 6.62500024e-05f, 8.87499991e-05f, 0.000156250011f, 0.000268750038f,
    0.000381250022f, 0.000493750034f, 0.000606250076f, 0.00071875006f, 0.000831249985f,
    0.000943750085f, 0.00128124992f, 0.00184375001f, 0.00240624999f, 0.00296874996f, 0.00353124971f,
    0.00409374991f, 0.00465624966f, 0.00521875033f, 0.00578125007f, 0.00634374982f, 0.00690625003f,
    0.00746874977f, 0.00803124998f, 0.00859375019f, 0.00915624946f, 0.00971874967f, 0.0114062503f,
    0.0142187504f, 0.0170312505f, 0.0198437516f, 0.0226562507f, 0.0254687499f, 0.028281251f,
    0.0310937501f, 0.0339062512f, 0.0367187522f, 0.0395312496f, 0.0423437469f, 0.0451562516f,
    0.047968749f, 0.05078125f, 0.053593751f, 0.0564062484f, 0.0592187531f, 0.0620312504f,
    0.0648437515f, 0.0676562563f, 0.0704687461f, 0.0732812509f, 0.0760937482f, 0.078906253f,
    0.0817187577f, 0.0845312476f, 0.0873437524f, 0.0901562497f, 0.0929687545f, 0.0957812592f,
    0.0985937491f, 0.107031256f, 0.12109375f, 0.135156244f, 0.149218753f, 0.163281247f,
    0.177343756f, 0.19140625f, 0.205468744f, 0.219531253f, 0.233593747f, 0.247656241f, 0.26171875f,
    0.275781274f, 0.289843738f, 0.303906262f, 0.317968726f, 0.33203125f, 0.346093744f, 0.360156238f,
    0.374218762f, 0.388281226f, 0.40234375f, 0.416406244f, 0.430468738f, 0.444531262f, 0.458593726f,
    0.47265625f, 0.486718714f, 0.500781238f, 0.514843702f, 0.528906226f, 0.54296875f, 0.557031274f,
    0.571093798f, 0.585156262f, 0.599218726f, 0.61328125f, 0.627343774f, 0.641406298f, 0.655468762f,
    0.669531226f, 0.68359375f, 0.697656274f, 0.711718798f, 0.725781262f, 0.739843726f, 0.75390625f,
    0.767968774f, 0.782031238f, 0.796093762f, 0.810156226f, 0.82421875f, 0.838281274f, 0.852343738f,
    0.866406262f, 0.880468726f, 0.89453125f, 0.908593774f, 0.922656238f, 0.936718762f, 0.950781226f,
    0.96484375f, 0.978906274f, 0.992968738f, 1.0f,
};

namespace {

// NF4 midpoints (c_i + c_{i+1}) / 2, rounded to fp32 as torch computes them.
struct Nf4Midpoints {
  float m[15];
  Nf4Midpoints() {
    for (int i = 0; i < 15; ++i) m[i] = (kNf4Code[i] + kNf4Code[i + 1]) / 2.0f;
  }
};
const Nf4Midpoints& nf4_midpoints() {
  static const Nf4Midpoints mids;
  return mids;
}

// bitsandbytes' 65536-entry lookup table from a grid over [-1, 1] to the index
// of the dynamic code (build_quantize_lut in its cpu_ops.cpp).
constexpr int kLutSize = 65536;
struct DynamicLut {
  uint8_t lut[kLutSize];
  DynamicLut() {
    float mid[255];
    for (int i = 0; i < 255; ++i) mid[i] = (kDynamicCode[i] + kDynamicCode[i + 1]) * 0.5f;
    int code = 0;
    for (int i = 0; i < kLutSize; ++i) {
      float grid = (2.0f * float(i)) / float(kLutSize - 1) - 1.0f;
      while (code < 255 && mid[code] < grid) ++code;
      lut[i] = uint8_t(code);
    }
  }
};
const DynamicLut& dynamic_lut() {
  static const DynamicLut table;
  return table;
}

// Index into the LUT for a value already divided by the block scale.
inline int dynamic_lut_index(float v) {
  if (std::isnan(v)) return 0;  // (int)NaN is 0x80000000 on x86: low 16 bits 0
  v = std::min(std::max(v, -1.0f), 1.0f);
  float half = (v + 1.0f) * 0.5f;
  return int(std::fma(half, float(kLutSize - 1), 0.5f)) & 0xffff;
}

// torch's multi_row_sum (SumKernel.cpp): sums `size` rows of NROWS x W floats
// (row i, column k, lane l at data[i*row_stride + k*W + l]) with a cascade of
// four accumulator levels so that only partial sums of similar size meet.
template <int NROWS, int W>
void torch_multi_row_sum(const float* data, int64_t row_stride, int64_t size,
                         float out[NROWS][W]) {
  constexpr int kLevels = 4;
  int64_t ceil_log2 = 1;
  if (size > 2) {
    uint64_t v = uint64_t(size - 1);
    int last = 63;
    while (!(v >> last)) --last;
    ceil_log2 = last + 1;
  }
  const int64_t level_power = std::max<int64_t>(4, ceil_log2 / kLevels);
  const int64_t level_step = int64_t(1) << level_power;
  const int64_t level_mask = level_step - 1;
  float acc[kLevels][NROWS][W] = {};
  int64_t i = 0;
  while (i + level_step <= size) {
    for (int64_t j = 0; j < level_step; ++j, ++i)
      for (int k = 0; k < NROWS; ++k)
        for (int l = 0; l < W; ++l) acc[0][k][l] += data[i * row_stride + k * W + l];
    for (int j = 1; j < kLevels; ++j) {
      for (int k = 0; k < NROWS; ++k)
        for (int l = 0; l < W; ++l) {
          acc[j][k][l] += acc[j - 1][k][l];
          acc[j - 1][k][l] = 0.0f;
        }
      if ((i & (level_mask << (j * level_power))) != 0) break;
    }
  }
  for (; i < size; ++i)
    for (int k = 0; k < NROWS; ++k)
      for (int l = 0; l < W; ++l) acc[0][k][l] += data[i * row_stride + k * W + l];
  for (int j = 1; j < kLevels; ++j)
    for (int k = 0; k < NROWS; ++k)
      for (int l = 0; l < W; ++l) acc[0][k][l] += acc[j][k][l];
  for (int k = 0; k < NROWS; ++k)
    for (int l = 0; l < W; ++l) out[k][l] = acc[0][k][l];
}

// torch.sum of a contiguous fp32 vector in the order torch's CPU kernel adds
// (cascade_sum -> vectorized_inner_sum with 8-lane vectors, or row_sum for
// fewer than 8 values), as it runs on a single thread.
float torch_order_sum(const float* x, int64_t n) {
  constexpr int kLanes = 8, kIlp = 4;
  if (n >= kLanes) {
    const int64_t vectors = n / kLanes;
    const int64_t rows = vectors / kIlp;
    float partial[kIlp][kLanes];
    torch_multi_row_sum<kIlp, kLanes>(x, kIlp * kLanes, rows, partial);
    for (int64_t v = rows * kIlp; v < vectors; ++v)
      for (int l = 0; l < kLanes; ++l) partial[0][l] += x[v * kLanes + l];
    for (int k = 1; k < kIlp; ++k)
      for (int l = 0; l < kLanes; ++l) partial[0][l] += partial[k][l];
    float total = 0.0f;
    for (int64_t i = vectors * kLanes; i < n; ++i) total += x[i];
    for (int l = 0; l < kLanes; ++l) total += partial[0][l];
    return total;
  }
  const int64_t rows = n / kIlp;
  float partial[kIlp][1];
  torch_multi_row_sum<kIlp, 1>(x, kIlp, rows, partial);
  for (int64_t i = rows * kIlp; i < n; ++i) partial[0][0] += x[i];
  for (int k = 1; k < kIlp; ++k) partial[0][0] += partial[k][0];
  return partial[0][0];
}

}  // namespace

uint8_t nf4_nearest(float x) {
  const float* mid = nf4_midpoints().m;
  int idx = 0;
  for (int i = 0; i < 15; ++i) idx += mid[i] < x;
  return uint8_t(idx);
}

void nf4_quantize_blocks(const float* w, int64_t n, uint8_t* packed, float* absmax) {
  const int64_t nblocks = n / kNf4BlockSize;
  const float* mid = nf4_midpoints().m;
  const float kMinAbsmax = static_cast<float>(1e-38);  // torch: absmax.clamp(min=1e-38)
  parallel_for(nblocks, 256, [&](int64_t b0, int64_t b1, int) {
    for (int64_t b = b0; b < b1; ++b) {
      const float* x = w + b * kNf4BlockSize;
      float m = 0.0f;
      for (int i = 0; i < kNf4BlockSize; ++i) m = std::max(m, std::fabs(x[i]));
      absmax[b] = m;
      const float reciprocal = 1.0f / std::max(m, kMinAbsmax);
      float s[kNf4BlockSize];
      for (int i = 0; i < kNf4BlockSize; ++i) s[i] = std::min(std::max(x[i] * reciprocal, -1.0f), 1.0f);
      // Index = number of midpoints below s (loop over midpoints outermost so
      // the compiler vectorizes across the block).
      int32_t idx[kNf4BlockSize] = {};
      for (int j = 0; j < 15; ++j)
        for (int i = 0; i < kNf4BlockSize; ++i) idx[i] += mid[j] < s[i] ? 1 : 0;
      uint8_t* out = packed + b * (kNf4BlockSize / 2);
      for (int i = 0; i < kNf4BlockSize / 2; ++i) out[i] = uint8_t(idx[2 * i] << 4 | idx[2 * i + 1]);
    }
  });
}

void nf4_double_quantize(const float* absmax, int64_t nblocks, uint8_t* absmax_q, float* scale,
                         float* mean) {
  if (nblocks <= 0) { *mean = 0.0f; return; }
  const float m = torch_order_sum(absmax, nblocks) / float(nblocks);
  *mean = m;
  const uint8_t* lut = dynamic_lut().lut;
  const int64_t groups = (nblocks + kNf4AbsmaxBlock - 1) / kNf4AbsmaxBlock;
  parallel_for(groups, 4, [&](int64_t g0, int64_t g1, int) {
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t begin = g * kNf4AbsmaxBlock, end = std::min(nblocks, begin + kNf4AbsmaxBlock);
      float group_max = 0.0f;
      for (int64_t i = begin; i < end; ++i) group_max = std::max(group_max, std::fabs(absmax[i] - m));
      scale[g] = group_max;
      if (group_max == 0.0f) {
        std::memset(absmax_q + begin, 0, size_t(end - begin));
        continue;
      }
      const float inverse = 1.0f / group_max;
      for (int64_t i = begin; i < end; ++i)
        absmax_q[i] = lut[dynamic_lut_index((absmax[i] - m) * inverse)];
    }
  });
}

float nf4_block_absmax(const Nf4Tensor& t, int64_t block) {
  // Two roundings as bitsandbytes does (no fused multiply-add): the volatile
  // keeps the compiler from contracting the product into the addition.
  volatile float scaled = kDynamicCode[t.absmax_q[block]] * t.absmax_scale[block / kNf4AbsmaxBlock];
  return scaled + t.absmax_mean;
}

void nf4_absmax_dequantize(const uint8_t* absmax_q, const float* scale, float mean,
                           int64_t nblocks, float* absmax) {
  Nf4Tensor t;
  t.absmax_q = absmax_q;
  t.absmax_scale = scale;
  t.absmax_mean = mean;
  for (int64_t b = 0; b < nblocks; ++b) absmax[b] = nf4_block_absmax(t, b);
}

void nf4_dequantize(const Nf4Tensor& t, int64_t begin, int64_t end, float* out) {
  const int64_t first = begin / kNf4BlockSize, blocks = (end - begin) / kNf4BlockSize;
  parallel_for(blocks, 64, [&](int64_t lo, int64_t hi, int) {
    for (int64_t b = first + lo; b < first + hi; ++b) {
      const float a = nf4_block_absmax(t, b);
      const uint8_t* q = t.packed + b * (kNf4BlockSize / 2);
      float* y = out + (b - first) * kNf4BlockSize;
      for (int i = 0; i < kNf4BlockSize / 2; ++i) {
        y[2 * i] = kNf4Code[q[i] >> 4] * a;
        y[2 * i + 1] = kNf4Code[q[i] & 15] * a;
      }
    }
  });
}

}  // namespace ls
