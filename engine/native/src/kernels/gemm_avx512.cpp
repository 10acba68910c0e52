// AVX-512 kernels for gemm.cpp (compiled with -mavx512f/bw/vl/dq on x86 only;
// chosen at run time when active_isa() is Avx512).
//
// Micro-kernel 14 x 32: 28 zmm accumulators (14 rows x two 16-float vectors),
// two B vectors per k and the 14 A values broadcast from memory straight into
// the FMAs. 28 independent FMA chains cover the 4-cycle latency of two FMA
// ports; each k step does 28 FMAs against 16 loads. A is read in place
// (unpacked); variants for 1..14 rows and for <= 16 columns cover the edges
// without a scratch tile.
#if defined(LS_HAVE_X86_KERNELS)
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 reports its own AVX-512 intrinsics (their _mm512_undefined_*
// placeholders) as uninitialized when they are inlined; the code is fine.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <utility>

#include "gemm_internal.h"

namespace ls {
namespace gemm {
namespace {

constexpr int kMR = 14, kNR = 32;

// R rows (1..14) x V vectors of 16 columns (1 or 2). A is read in place:
// KC ? a[i*lda + k] : a[k*lda + i]. Only the first `cols` columns are stored.
template <int R, int V, bool KC>
void micro_t(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc,
             float alpha, float beta, int cols) {
  __m512 acc[R][V];
#pragma GCC unroll 14
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < V; ++v) acc[i][v] = _mm512_setzero_ps();
#pragma GCC unroll 14
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < V; ++v)
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16 * v), _MM_HINT_T0);

  const int64_t rs = KC ? lda : 1, ks = KC ? 1 : lda;
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[V];
    for (int v = 0; v < V; ++v) bv[v] = _mm512_load_ps(b + 16 * v);
    _mm_prefetch(reinterpret_cast<const char*>(b + 8 * kNR), _MM_HINT_T0);
    if (!KC) {  // rows of A lda apart: a stride the hardware prefetchers miss
      _mm_prefetch(reinterpret_cast<const char*>(a + 8 * ks), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(a + 8 * ks + R - 1), _MM_HINT_T0);
    }
#pragma GCC unroll 14
    for (int i = 0; i < R; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i * rs]);
      for (int v = 0; v < V; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
    }
    a += ks;
    b += kNR;
  }

  __mmask16 mask[2];
  mask[0] = cols >= 16 ? __mmask16(0xffff) : __mmask16((1u << cols) - 1);
  mask[1] = cols >= 32 ? __mmask16(0xffff) : cols > 16 ? __mmask16((1u << (cols - 16)) - 1) : 0;
  const __m512 va = _mm512_set1_ps(alpha);
  if (beta == 0.0f) {
#pragma GCC unroll 14
    for (int i = 0; i < R; ++i)
      for (int v = 0; v < V; ++v)
        _mm512_mask_storeu_ps(c + i * ldc + 16 * v, mask[v], _mm512_mul_ps(va, acc[i][v]));
  } else {
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
    for (int i = 0; i < R; ++i)
      for (int v = 0; v < V; ++v) {
        float* ci = c + i * ldc + 16 * v;
        const __m512 old = _mm512_maskz_loadu_ps(mask[v], ci);
        _mm512_mask_storeu_ps(ci, mask[v], _mm512_fmadd_ps(va, acc[i][v], _mm512_mul_ps(vb, old)));
      }
  }
}

using MicroFn = void (*)(int64_t, const float*, int64_t, const float*, float*, int64_t, float,
                         float, int);

template <int V, bool KC, size_t... I>
constexpr std::array<MicroFn, sizeof...(I)> micro_table(std::index_sequence<I...>) {
  return {&micro_t<int(I) + 1, V, KC>...};
}

// [a_kcontig][cols > 16][rows - 1]
const std::array<MicroFn, kMR> kMicro[2][2] = {
    {micro_table<1, false>(std::make_index_sequence<kMR>()),
     micro_table<2, false>(std::make_index_sequence<kMR>())},
    {micro_table<1, true>(std::make_index_sequence<kMR>()),
     micro_table<2, true>(std::make_index_sequence<kMR>())}};

void micro_avx512(int64_t kc, const float* a, int64_t lda, bool a_kcontig, const float* b,
                  float* c, int64_t ldc, float alpha, float beta, int rows, int cols) {
  kMicro[a_kcontig][cols > 16][size_t(rows - 1)](kc, a, lda, b, c, ldc, alpha, beta, cols);
}

// In-register transpose of a 16 x 16 block: r[i] lane c -> r[c] lane i.
inline void transpose16x16(__m512 (&r)[16]) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4g + j], 128-bit lane L: column 4L + j of rows 4g .. 4g+3.
  __m512 u[16];
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {
    const __m512d t0 = _mm512_castps_pd(t[4 * g]), t1 = _mm512_castps_pd(t[4 * g + 1]);
    const __m512d t2 = _mm512_castps_pd(t[4 * g + 2]), t3 = _mm512_castps_pd(t[4 * g + 3]);
    u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  // Transpose the 4 x 4 grid of 128-bit lanes for each j.
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const __m512 x0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x44);
    const __m512 x1 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xEE);
    const __m512 x2 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x44);
    const __m512 x3 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xEE);
    r[0 + j] = _mm512_shuffle_f32x4(x0, x2, 0x88);
    r[4 + j] = _mm512_shuffle_f32x4(x0, x2, 0xDD);
    r[8 + j] = _mm512_shuffle_f32x4(x1, x3, 0x88);
    r[12 + j] = _mm512_shuffle_f32x4(x1, x3, 0xDD);
  }
}

void transpose_panel_avx512(const float* src, int64_t lds, int rows, int64_t kc, int width,
                            float* dst) {
  for (int r0 = 0; r0 < width; r0 += 16) {
    const int cols = std::min(16, width - r0);  // dst floats written per k
    const int valid = std::max(0, std::min(16, rows - r0));
    const __mmask16 store_mask = __mmask16((1u << cols) - 1);
    for (int64_t k0 = 0; k0 < kc; k0 += 16) {
      const int kn = int(std::min<int64_t>(16, kc - k0));
      const __mmask16 load_mask = __mmask16((1u << kn) - 1);
      __m512 v[16];
      if (kn == 16) {
        for (int i = 0; i < 16; ++i)
          v[i] = i < valid ? _mm512_loadu_ps(src + (r0 + i) * lds + k0) : _mm512_setzero_ps();
      } else {
        for (int i = 0; i < 16; ++i)
          v[i] = i < valid ? _mm512_maskz_loadu_ps(load_mask, src + (r0 + i) * lds + k0)
                           : _mm512_setzero_ps();
      }
      transpose16x16(v);
      float* d = dst + k0 * width + r0;
      if (cols == 16) {
        for (int kk = 0; kk < kn; ++kk) _mm512_storeu_ps(d + kk * width, v[kk]);
      } else {
        for (int kk = 0; kk < kn; ++kk) _mm512_mask_storeu_ps(d + kk * width, store_mask, v[kk]);
      }
    }
  }
}

// transpose_panel_avx512 of a bf16 source: each 16-value row piece is widened
// in registers (bf16 -> fp32 is a 16-bit shift, exact) before the transpose.
void transpose_panel_bf16_avx512(const uint16_t* src, int64_t lds, int rows, int64_t kc,
                                 int width, float* dst) {
  for (int r0 = 0; r0 < width; r0 += 16) {
    const int cols = std::min(16, width - r0);
    const int valid = std::max(0, std::min(16, rows - r0));
    const __mmask16 store_mask = __mmask16((1u << cols) - 1);
    for (int64_t k0 = 0; k0 < kc; k0 += 16) {
      const int kn = int(std::min<int64_t>(16, kc - k0));
      const __mmask16 load_mask = kn == 16 ? __mmask16(0xffff) : __mmask16((1u << kn) - 1);
      __m512 v[16];
      for (int i = 0; i < 16; ++i) {
        if (i < valid) {
          const __m256i h = _mm256_maskz_loadu_epi16(load_mask, src + (r0 + i) * lds + k0);
          v[i] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        } else {
          v[i] = _mm512_setzero_ps();
        }
      }
      transpose16x16(v);
      float* d = dst + k0 * width + r0;
      if (cols == 16) {
        for (int kk = 0; kk < kn; ++kk) _mm512_storeu_ps(d + kk * width, v[kk]);
      } else {
        for (int kk = 0; kk < kn; ++kk) _mm512_mask_storeu_ps(d + kk * width, store_mask, v[kk]);
      }
    }
  }
}

void bf16_rows_to_panels_avx512(const uint16_t* src, int64_t lds, int64_t kc, int64_t nlen,
                                float* dst) {
  const int64_t full = nlen / kNR;
  const int64_t rest = nlen - full * kNR;
  const __mmask32 rest_mask = rest ? __mmask32((uint64_t(1) << rest) - 1) : 0;
  for (int64_t k = 0; k < kc; ++k) {
    const uint16_t* s = src + k * lds;
    float* d = dst + k * kNR;
    for (int64_t q = 0; q < full; ++q) {
      const __m512i h = _mm512_loadu_si512(s + q * kNR);
      const __m512i lo = _mm512_cvtepu16_epi32(_mm512_castsi512_si256(h));
      const __m512i hi = _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(h, 1));
      _mm512_store_ps(d + q * kc * kNR, _mm512_castsi512_ps(_mm512_slli_epi32(lo, 16)));
      _mm512_store_ps(d + q * kc * kNR + 16, _mm512_castsi512_ps(_mm512_slli_epi32(hi, 16)));
    }
    if (rest) {
      const __m512i h = _mm512_maskz_loadu_epi16(rest_mask, s + full * kNR);
      const __m512i lo = _mm512_cvtepu16_epi32(_mm512_castsi512_si256(h));
      const __m512i hi = _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(h, 1));
      _mm512_store_ps(d + full * kc * kNR, _mm512_castsi512_ps(_mm512_slli_epi32(lo, 16)));
      _mm512_store_ps(d + full * kc * kNR + 16, _mm512_castsi512_ps(_mm512_slli_epi32(hi, 16)));
    }
  }
}

void bf16_to_f32_avx512(const uint16_t* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
  }
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1);
    const __m256i h = _mm256_maskz_loadu_epi16(m, src + i);
    _mm512_mask_storeu_ps(dst + i, m,
                          _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
  }
}

// 8 NF4 bytes -> 16 code indices in element order (high nibble first).
inline __m512i nf4_indices(__m128i bytes8) {
  const __m128i w = _mm_cvtepu8_epi16(bytes8);
  const __m128i high = _mm_srli_epi16(w, 4);
  const __m128i low = _mm_slli_epi16(_mm_and_si128(w, _mm_set1_epi16(15)), 8);
  return _mm512_cvtepu8_epi32(_mm_or_si128(high, low));
}

void nf4_blocks_to_f32_avx512(const uint8_t* src, int64_t blocks, const float* absmax,
                              float* dst) {
  const __m512 code = _mm512_loadu_ps(kNf4Code);
  for (int64_t b = 0; b < blocks; ++b) {
    const __m512 scale = _mm512_set1_ps(absmax[b]);
    const uint8_t* s = src + b * (kNf4BlockSize / 2);
    float* d = dst + b * kNf4BlockSize;
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s));
    const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 16));
    _mm512_storeu_ps(d, _mm512_mul_ps(_mm512_permutexvar_ps(nf4_indices(lo), code), scale));
    _mm512_storeu_ps(d + 16, _mm512_mul_ps(
        _mm512_permutexvar_ps(nf4_indices(_mm_unpackhi_epi64(lo, lo)), code), scale));
    _mm512_storeu_ps(d + 32, _mm512_mul_ps(_mm512_permutexvar_ps(nf4_indices(hi), code), scale));
    _mm512_storeu_ps(d + 48, _mm512_mul_ps(
        _mm512_permutexvar_ps(nf4_indices(_mm_unpackhi_epi64(hi, hi)), code), scale));
  }
}

// sum_k x_r[k] * w[k] for R rows of x at once (w loaded once per step).
template <int R>
void dot_block(const float* x, int64_t ldx, const float* w, int64_t k, float* out) {
  __m512 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) {
    const __m512 w0 = _mm512_loadu_ps(w + i), w1 = _mm512_loadu_ps(w + i + 16);
    for (int r = 0; r < R; ++r) {
      acc[r][0] = _mm512_fmadd_ps(_mm512_loadu_ps(x + r * ldx + i), w0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(_mm512_loadu_ps(x + r * ldx + i + 16), w1, acc[r][1]);
    }
  }
  for (; i < k; i += 16) {
    const __mmask16 m = k - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (k - i)) - 1);
    const __m512 w0 = _mm512_maskz_loadu_ps(m, w + i);
    for (int r = 0; r < R; ++r)
      acc[r][0] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + r * ldx + i), w0, acc[r][0]);
  }
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
}

void dot_rows_avx512(const float* x, int64_t ldx, int64_t rows, const float* w, int64_t k,
                     float* y, int64_t ldy, bool accumulate) {
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

void axpy_rows_avx512(int64_t n, const float* a, int rows, const float* x, int64_t ldx, float* y) {
  __m512 va[4];
  for (int r = 0; r < 4; ++r) va[r] = _mm512_set1_ps(r < rows ? a[r] : 0.0f);
  const float* x1 = x + (rows > 1 ? ldx : 0);
  const float* x2 = x + (rows > 2 ? 2 * ldx : 0);
  const float* x3 = x + (rows > 3 ? 3 * ldx : 0);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    __m512 acc = _mm512_maskz_loadu_ps(m, y + i);
    acc = _mm512_fmadd_ps(va[0], _mm512_maskz_loadu_ps(m, x + i), acc);
    if (rows > 1) acc = _mm512_fmadd_ps(va[1], _mm512_maskz_loadu_ps(m, x1 + i), acc);
    if (rows > 2) acc = _mm512_fmadd_ps(va[2], _mm512_maskz_loadu_ps(m, x2 + i), acc);
    if (rows > 3) acc = _mm512_fmadd_ps(va[3], _mm512_maskz_loadu_ps(m, x3 + i), acc);
    _mm512_mask_storeu_ps(y + i, m, acc);
  }
}

double peak_loop_avx512(double seconds) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  constexpr int kChains = 16, kInner = 2048;
  __m512 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(float(j) * 1e-3f);
  volatile float mul_in = 0.999999f, add_in = 1e-6f;
  const __m512 mul = _mm512_set1_ps(mul_in), add = _mm512_set1_ps(add_in);
  int64_t rounds = 0;
  do {
    for (int r = 0; r < kInner; ++r) {
#pragma GCC unroll 16
      for (int j = 0; j < kChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], mul, add);
    }
    ++rounds;
  } while (Clock::now() < deadline);
  __m512 sum = acc[0];
  for (int j = 1; j < kChains; ++j) sum = _mm512_add_ps(sum, acc[j]);
  volatile float keep = _mm512_reduce_add_ps(sum);
  (void)keep;
  return double(rounds) * kInner * kChains * 16 * 2.0;
}

}  // namespace

const IsaKernels& avx512_kernels() {
  static const IsaKernels k = {Isa::Avx512,
                               kMR,
                               kNR,
                               micro_avx512,
                               transpose_panel_avx512,
                               transpose_panel_bf16_avx512,
                               bf16_rows_to_panels_avx512,
                               bf16_to_f32_avx512,
                               nf4_blocks_to_f32_avx512,
                               dot_rows_avx512,
                               axpy_rows_avx512,
                               peak_loop_avx512};
  return k;
}

}  // namespace gemm
}  // namespace ls
#endif  // LS_HAVE_X86_KERNELS
