// AVX2 + FMA kernels for gemm.cpp (compiled with -mavx2 -mfma -mf16c on x86
// only; chosen at run time when active_isa() is Avx2).
//
// Micro-kernel 6 x 16: 12 ymm accumulators (6 rows x two 8-float vectors),
// two B vectors and one broadcast A value: 15 of the 16 ymm registers. A is
// read in place (unpacked); variants for 1..6 rows and masked stores cover
// the edges.
#if defined(LS_HAVE_X86_KERNELS)
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <utility>

#include "../common/dtype.h"
#include "gemm_internal.h"

namespace ls {
namespace gemm {
namespace {

constexpr int kMR = 6, kNR = 16;

// Mask with the first n (0..8) lanes set, for maskload / maskstore.
inline __m256i first_lanes(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// R rows (1..6) x 16 columns. A is read in place: KC ? a[i*lda + k] :
// a[k*lda + i]. Only the first `cols` columns are stored.
template <int R, bool KC>
void micro_t(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc,
             float alpha, float beta, int cols) {
  __m256 acc[R][2];
#pragma GCC unroll 6
  for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
#pragma GCC unroll 6
  for (int i = 0; i < R; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);

  const int64_t rs = KC ? lda : 1, ks = KC ? 1 : lda;
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
    for (int i = 0; i < R; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i * rs);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += ks;
    b += kNR;
  }

  const __m256 va = _mm256_set1_ps(alpha);
  if (cols == kNR) {
    if (beta == 0.0f) {
#pragma GCC unroll 6
      for (int i = 0; i < R; ++i) {
        _mm256_storeu_ps(c + i * ldc, _mm256_mul_ps(va, acc[i][0]));
        _mm256_storeu_ps(c + i * ldc + 8, _mm256_mul_ps(va, acc[i][1]));
      }
    } else {
      const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
      for (int i = 0; i < R; ++i) {
        float* ci = c + i * ldc;
        _mm256_storeu_ps(ci, _mm256_fmadd_ps(va, acc[i][0], _mm256_mul_ps(vb, _mm256_loadu_ps(ci))));
        _mm256_storeu_ps(ci + 8,
                         _mm256_fmadd_ps(va, acc[i][1], _mm256_mul_ps(vb, _mm256_loadu_ps(ci + 8))));
      }
    }
    return;
  }
  const __m256i mask[2] = {first_lanes(std::min(cols, 8)), first_lanes(std::max(cols - 8, 0))};
  const __m256 vb = _mm256_set1_ps(beta);
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < 2; ++v) {
      float* ci = c + i * ldc + 8 * v;
      __m256 out = _mm256_mul_ps(va, acc[i][v]);
      if (beta != 0.0f)
        out = _mm256_fmadd_ps(va, acc[i][v], _mm256_mul_ps(vb, _mm256_maskload_ps(ci, mask[v])));
      _mm256_maskstore_ps(ci, mask[v], out);
    }
}

using MicroFn = void (*)(int64_t, const float*, int64_t, const float*, float*, int64_t, float,
                         float, int);

template <bool KC, size_t... I>
constexpr std::array<MicroFn, sizeof...(I)> micro_table(std::index_sequence<I...>) {
  return {&micro_t<int(I) + 1, KC>...};
}

// [a_kcontig][rows - 1]
const std::array<MicroFn, kMR> kMicro[2] = {micro_table<false>(std::make_index_sequence<kMR>()),
                                            micro_table<true>(std::make_index_sequence<kMR>())};

void micro_avx2(int64_t kc, const float* a, int64_t lda, bool a_kcontig, const float* b, float* c,
                int64_t ldc, float alpha, float beta, int rows, int cols) {
  kMicro[a_kcontig][size_t(rows - 1)](kc, a, lda, b, c, ldc, alpha, beta, cols);
}

// In-register transpose of an 8 x 8 block: r[i] lane c -> r[c] lane i.
inline void transpose8x8(__m256 (&r)[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

void transpose_panel_avx2(const float* src, int64_t lds, int rows, int64_t kc, int width,
                          float* dst) {
  for (int r0 = 0; r0 < width; r0 += 8) {
    const int cols = std::min(8, width - r0);
    const int valid = std::max(0, std::min(8, rows - r0));
    const __m256i store_mask = first_lanes(cols);
    for (int64_t k0 = 0; k0 < kc; k0 += 8) {
      const int kn = int(std::min<int64_t>(8, kc - k0));
      __m256 v[8];
      if (kn == 8) {
        for (int i = 0; i < 8; ++i)
          v[i] = i < valid ? _mm256_loadu_ps(src + (r0 + i) * lds + k0) : _mm256_setzero_ps();
      } else {
        const __m256i load_mask = first_lanes(kn);
        for (int i = 0; i < 8; ++i)
          v[i] = i < valid ? _mm256_maskload_ps(src + (r0 + i) * lds + k0, load_mask)
                           : _mm256_setzero_ps();
      }
      transpose8x8(v);
      float* d = dst + k0 * width + r0;
      if (cols == 8) {
        for (int kk = 0; kk < kn; ++kk) _mm256_storeu_ps(d + kk * width, v[kk]);
      } else {
        for (int kk = 0; kk < kn; ++kk) _mm256_maskstore_ps(d + kk * width, store_mask, v[kk]);
      }
    }
  }
}

// transpose_panel_avx2 of a bf16 source, widened in registers (exact).
void transpose_panel_bf16_avx2(const uint16_t* src, int64_t lds, int rows, int64_t kc, int width,
                               float* dst) {
  for (int r0 = 0; r0 < width; r0 += 8) {
    const int cols = std::min(8, width - r0);
    const int valid = std::max(0, std::min(8, rows - r0));
    const __m256i store_mask = first_lanes(cols);
    for (int64_t k0 = 0; k0 < kc; k0 += 8) {
      const int kn = int(std::min<int64_t>(8, kc - k0));
      __m256 v[8];
      for (int i = 0; i < 8; ++i) {
        if (i >= valid) {
          v[i] = _mm256_setzero_ps();
          continue;
        }
        const uint16_t* s = src + (r0 + i) * lds + k0;
        __m128i h;
        if (kn == 8) {
          h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s));
        } else {
          alignas(16) uint16_t part[8] = {};
          for (int kk = 0; kk < kn; ++kk) part[kk] = s[kk];
          h = _mm_load_si128(reinterpret_cast<const __m128i*>(part));
        }
        v[i] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
      }
      transpose8x8(v);
      float* d = dst + k0 * width + r0;
      if (cols == 8) {
        for (int kk = 0; kk < kn; ++kk) _mm256_storeu_ps(d + kk * width, v[kk]);
      } else {
        for (int kk = 0; kk < kn; ++kk) _mm256_maskstore_ps(d + kk * width, store_mask, v[kk]);
      }
    }
  }
}

void bf16_rows_to_panels_avx2(const uint16_t* src, int64_t lds, int64_t kc, int64_t nlen,
                              float* dst) {
  for (int64_t k = 0; k < kc; ++k) {
    const uint16_t* s = src + k * lds;
    float* d = dst + k * kNR;
    for (int64_t j0 = 0; j0 < nlen; j0 += 8) {
      float* out = d + (j0 / kNR) * kc * kNR + j0 % kNR;
      if (nlen - j0 >= 8) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + j0));
        _mm256_store_ps(out, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
      } else {
        for (int64_t j = j0; j < j0 + 8; ++j) out[j - j0] = j < nlen ? bf16_to_f32(s[j]) : 0.0f;
      }
    }
    if (nlen % kNR != 0 && nlen % kNR <= 8) {  // the last panel's second half
      float* out = d + (nlen / kNR) * kc * kNR + 8;
      _mm256_store_ps(out, _mm256_setzero_ps());
    }
  }
}

void bf16_to_f32_avx2(const uint16_t* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
  }
  for (; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
}

// 8 NF4 bytes -> 16 code indices as bytes, in element order (high nibble first).
inline __m128i nf4_index_bytes(__m128i bytes8) {
  const __m128i w = _mm_cvtepu8_epi16(bytes8);
  const __m128i high = _mm_srli_epi16(w, 4);
  const __m128i low = _mm_slli_epi16(_mm_and_si128(w, _mm_set1_epi16(15)), 8);
  return _mm_or_si128(high, low);
}

// kNf4Code[idx] for 8 indices 0..15: two 8-entry permutes, picked by bit 3.
inline __m256 nf4_lookup(__m256i idx, __m256 code_lo, __m256 code_hi) {
  const __m256 lo = _mm256_permutevar8x32_ps(code_lo, idx);
  const __m256 hi = _mm256_permutevar8x32_ps(code_hi, idx);
  return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

void nf4_blocks_to_f32_avx2(const uint8_t* src, int64_t blocks, const float* absmax, float* dst) {
  const __m256 code_lo = _mm256_loadu_ps(kNf4Code), code_hi = _mm256_loadu_ps(kNf4Code + 8);
  for (int64_t b = 0; b < blocks; ++b) {
    const __m256 scale = _mm256_set1_ps(absmax[b]);
    for (int i = 0; i < kNf4BlockSize / 2; i += 8) {
      const __m128i idx = nf4_index_bytes(
          _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + b * (kNf4BlockSize / 2) + i)));
      const __m256 v0 = nf4_lookup(_mm256_cvtepu8_epi32(idx), code_lo, code_hi);
      const __m256 v1 = nf4_lookup(_mm256_cvtepu8_epi32(_mm_srli_si128(idx, 8)), code_lo, code_hi);
      float* d = dst + b * kNf4BlockSize + 2 * i;
      _mm256_storeu_ps(d, _mm256_mul_ps(v0, scale));
      _mm256_storeu_ps(d + 8, _mm256_mul_ps(v1, scale));
    }
  }
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int R>
void dot_block(const float* x, int64_t ldx, const float* w, int64_t k, float* out) {
  __m256 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    const __m256 w0 = _mm256_loadu_ps(w + i), w1 = _mm256_loadu_ps(w + i + 8);
    for (int r = 0; r < R; ++r) {
      acc[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * ldx + i), w0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * ldx + i + 8), w1, acc[r][1]);
    }
  }
  for (; i + 8 <= k; i += 8) {
    const __m256 w0 = _mm256_loadu_ps(w + i);
    for (int r = 0; r < R; ++r)
      acc[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * ldx + i), w0, acc[r][0]);
  }
  for (int r = 0; r < R; ++r) {
    float s = hsum(_mm256_add_ps(acc[r][0], acc[r][1]));
    for (int64_t j = i; j < k; ++j) s += x[r * ldx + j] * w[j];
    out[r] = s;
  }
}

void dot_rows_avx2(const float* x, int64_t ldx, int64_t rows, const float* w, int64_t k, float* y,
                   int64_t ldy, bool accumulate) {
  float sums[4];
  for (int64_t t = 0; t < rows; t += 4) {
    const int64_t r = std::min<int64_t>(4, rows - t);
    const float* xt = x + t * ldx;
    switch (r) {
      case 4: dot_block<4>(xt, ldx, w, k, sums); break;
      case 3: dot_block<3>(xt, ldx, w, k, sums); break;
      case 2: dot_block<2>(xt, ldx, w, k, sums); break;
      default: dot_block<1>(xt, ldx, w, k, sums); break;
    }
    for (int64_t j = 0; j < r; ++j) {
      float& out = y[(t + j) * ldy];
      out = accumulate ? out + sums[j] : sums[j];
    }
  }
}

void axpy_rows_avx2(int64_t n, const float* a, int rows, const float* x, int64_t ldx, float* y) {
  __m256 va[4];
  for (int r = 0; r < 4; ++r) va[r] = _mm256_set1_ps(r < rows ? a[r] : 0.0f);
  const float* x1 = x + (rows > 1 ? ldx : 0);
  const float* x2 = x + (rows > 2 ? 2 * ldx : 0);
  const float* x3 = x + (rows > 3 ? 3 * ldx : 0);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 acc = _mm256_fmadd_ps(va[0], _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
    if (rows > 1) acc = _mm256_fmadd_ps(va[1], _mm256_loadu_ps(x1 + i), acc);
    if (rows > 2) acc = _mm256_fmadd_ps(va[2], _mm256_loadu_ps(x2 + i), acc);
    if (rows > 3) acc = _mm256_fmadd_ps(va[3], _mm256_loadu_ps(x3 + i), acc);
    _mm256_storeu_ps(y + i, acc);
  }
  for (; i < n; ++i)
    for (int r = 0; r < rows; ++r) y[i] += a[r] * x[r * ldx + i];
}

double peak_loop_avx2(double seconds) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  constexpr int kChains = 12, kInner = 2048;
  __m256 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm256_set1_ps(float(j) * 1e-3f);
  volatile float mul_in = 0.999999f, add_in = 1e-6f;
  const __m256 mul = _mm256_set1_ps(mul_in), add = _mm256_set1_ps(add_in);
  int64_t rounds = 0;
  do {
    for (int r = 0; r < kInner; ++r) {
#pragma GCC unroll 12
      for (int j = 0; j < kChains; ++j) acc[j] = _mm256_fmadd_ps(acc[j], mul, add);
    }
    ++rounds;
  } while (Clock::now() < deadline);
  __m256 sum = acc[0];
  for (int j = 1; j < kChains; ++j) sum = _mm256_add_ps(sum, acc[j]);
  volatile float keep = hsum(sum);
  (void)keep;
  return double(rounds) * kInner * kChains * 8 * 2.0;
}

}  // namespace

const IsaKernels& avx2_kernels() {
  static const IsaKernels k = {Isa::Avx2,
                               kMR,
                               kNR,
                               micro_avx2,
                               transpose_panel_avx2,
                               transpose_panel_bf16_avx2,
                               bf16_rows_to_panels_avx2,
                               bf16_to_f32_avx2,
                               nf4_blocks_to_f32_avx2,
                               dot_rows_avx2,
                               axpy_rows_avx2,
                               peak_loop_avx2};
  return k;
}

}  // namespace gemm
}  // namespace ls
#endif  // LS_HAVE_X86_KERNELS
