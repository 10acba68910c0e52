// AVX-512F inner kernels for ops.cpp (see ops_internal.h). Compiled with
// -mavx512f/bw/vl/dq -mfma; reached only when active_isa() is Avx512.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "ops_internal.h"

// GCC 12's intrinsic headers trip -Wmaybe-uninitialized on their own
// _mm*_undefined_*() placeholders (GCC bug 105593); the code here is fine.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace ls {
namespace ops_detail {
namespace {

inline __mmask16 tail_mask(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u);
}

// exp(x) with Cephes' expf polynomial (about 1 ulp): x = n·ln2 + r,
// |r| <= ln2/2, then y·2ⁿ by vscalefps. exp(x) = 0 below -87.336 (no
// denormals), +inf above 88.72; NaN propagates.
inline __m512 exp16(__m512 x) {
  const __m512 xc = _mm512_min_ps(_mm512_set1_ps(89.f), _mm512_max_ps(_mm512_set1_ps(-88.f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.f));
  const __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.33654f), _CMP_LT_OQ);
  return _mm512_maskz_scalef_ps(__mmask16(~tiny), y, n);
}

// ---- small GEMM: MR rows x (16·NV) columns per tile ------------------------
constexpr int kMR = 8;

// Accumulators are named variables (cM0, cM1), not arrays: GCC keeps an
// array of vectors in memory and stores it back on every k step.
#define LS_OPS_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

template <int MR, int NV, bool ROW>
void gemm_tile(int64_t K, const float* A, int64_t sam, int64_t sak, const float* B, int64_t ldb,
               float* C, int64_t ldc, __mmask16 mk0, __mmask16 mk1, bool acc) {
  // Accumulate onto C: one sequential sum over k whatever the K blocking.
#define LS_INIT(m)                                                                  \
  __m512 c##m##0 = _mm512_setzero_ps(), c##m##1 = _mm512_setzero_ps();              \
  const float* a##m = A + (MR > m ? m : 0) * sam;                                   \
  if (MR > m && acc) {                                                              \
    c##m##0 = _mm512_maskz_loadu_ps(mk0, C + m * ldc);                              \
    if (NV > 1) c##m##1 = _mm512_maskz_loadu_ps(mk1, C + m * ldc + 16);             \
  }
  LS_OPS_ROWS(LS_INIT)
#undef LS_INIT
  for (int64_t k = 0; k < K; ++k) {
    const float* b = B + k * ldb;
    const __m512 b0 = _mm512_maskz_loadu_ps(mk0, b);
    const __m512 b1 = NV > 1 ? _mm512_maskz_loadu_ps(mk1, b + 16) : _mm512_setzero_ps();
    const float* ac = A + k * sak;
#define LS_STEP(m)                                                      \
    if (MR > m) {                                                       \
      const __m512 av = _mm512_set1_ps(ROW ? a##m[k] : ac[m]);          \
      c##m##0 = _mm512_fmadd_ps(av, b0, c##m##0);                       \
      if (NV > 1) c##m##1 = _mm512_fmadd_ps(av, b1, c##m##1);           \
    }
    LS_OPS_ROWS(LS_STEP)
#undef LS_STEP
  }
#define LS_STORE(m)                                                       \
  if (MR > m) {                                                           \
    (void)a##m;                                                           \
    _mm512_mask_storeu_ps(C + m * ldc, mk0, c##m##0);                     \
    if (NV > 1) _mm512_mask_storeu_ps(C + m * ldc + 16, mk1, c##m##1);    \
  }
  LS_OPS_ROWS(LS_STORE)
#undef LS_STORE
}
#undef LS_OPS_ROWS

using Tile = void (*)(int64_t, const float*, int64_t, int64_t, const float*, int64_t, float*,
                      int64_t, __mmask16, __mmask16, bool);

template <int NV, bool ROW>
struct TileRow {
  static constexpr Tile t[kMR] = {gemm_tile<1, NV, ROW>, gemm_tile<2, NV, ROW>,
                                  gemm_tile<3, NV, ROW>, gemm_tile<4, NV, ROW>,
                                  gemm_tile<5, NV, ROW>, gemm_tile<6, NV, ROW>,
                                  gemm_tile<7, NV, ROW>, gemm_tile<8, NV, ROW>};
};
template <int NV, bool ROW>
constexpr Tile TileRow<NV, ROW>::t[kMR];

void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t sam, int64_t sak,
          const float* B, int64_t ldb, float* C, int64_t ldc, bool acc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!acc)
      for (int64_t m = 0; m < M; ++m) std::memset(C + m * ldc, 0, size_t(N) * sizeof(float));
    return;
  }
  const bool row = sak == 1;
  constexpr int64_t KC = 256, NR = 32;
  // B panel [kc, 32] copied contiguous when several row tiles reuse it: B rows
  // at a stride of a multiple of 2 KiB (K/V/dO rows) would share a few L1 sets.
  alignas(64) float panel[KC * NR];
  const bool pack = M > kMR;
  for (int64_t k0 = 0; k0 < K; k0 += KC) {
    const int64_t kc = std::min(KC, K - k0);
    const bool ac = acc || k0 > 0;
    const float* Ak = A + k0 * sak;
    const float* Bk = B + k0 * ldb;
    for (int64_t n0 = 0; n0 < N; n0 += NR) {
      const int64_t nn = std::min<int64_t>(NR, N - n0);
      const __mmask16 mk0 = tail_mask(nn), mk1 = nn > 16 ? tail_mask(nn - 16) : __mmask16(0);
      const Tile* tiles = nn > 16 ? (row ? TileRow<2, true>::t : TileRow<2, false>::t)
                                  : (row ? TileRow<1, true>::t : TileRow<1, false>::t);
      const float* Bp = Bk + n0;
      int64_t ldp = ldb;
      if (pack) {
        for (int64_t k = 0; k < kc; ++k) {
          _mm512_store_ps(panel + k * NR, _mm512_maskz_loadu_ps(mk0, Bp + k * ldb));
          _mm512_store_ps(panel + k * NR + 16, _mm512_maskz_loadu_ps(mk1, Bp + k * ldb + 16));
        }
        Bp = panel;
        ldp = NR;
      }
      for (int64_t m0 = 0; m0 < M; m0 += kMR) {
        const int64_t mr = std::min<int64_t>(kMR, M - m0);
        tiles[mr - 1](kc, Ak + m0 * sam, sam, sak, Bp, ldp, C + m0 * ldc + n0, ldc, mk0, mk1, ac);
      }
    }
  }
}

// ---- reductions ----------------------------------------------------------------

float dot(const float* a, const float* b, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
  }
  for (; i < n; i += 16) {
    const __mmask16 mk = tail_mask(n - i);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, a + i), _mm512_maskz_loadu_ps(mk, b + i), s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

inline __m512d load8_pd(const float* p, int64_t left) {
  const __mmask8 mk = left >= 8 ? __mmask8(0xFF) : __mmask8((1u << left) - 1u);
  return _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mk, p));
}

double dot_f64(const float* a, const float* b, int64_t n) {
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm512_fmadd_pd(load8_pd(a + i, 8), load8_pd(b + i, 8), s0);
    s1 = _mm512_fmadd_pd(load8_pd(a + i + 8, 8), load8_pd(b + i + 8, 8), s1);
  }
  for (; i < n; i += 8) s0 = _mm512_fmadd_pd(load8_pd(a + i, n - i), load8_pd(b + i, n - i), s0);
  return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

double dot3_f64(const float* a, const float* b, const float* c, int64_t n) {
  __m512d s = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 8) {
    const int64_t left = n - i;
    s = _mm512_fmadd_pd(_mm512_mul_pd(load8_pd(a + i, left), load8_pd(b + i, left)),
                        load8_pd(c + i, left), s);
  }
  return _mm512_reduce_add_pd(s);
}

float max(const float* x, int64_t n) {
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 m0 = ninf, m1 = ninf;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
    m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + i + 16));
  }
  for (; i < n; i += 16) m0 = _mm512_max_ps(m0, _mm512_mask_loadu_ps(ninf, tail_mask(n - i), x + i));
  return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

double exp_sum(const float* x, float scale, float shift, float* y, int64_t n) {
  const __m512 sc = _mm512_set1_ps(scale), sh = _mm512_set1_ps(shift);
  double total = 0;
  for (int64_t b0 = 0; b0 < n; b0 += 4096) {  // fp32 partial sums per block, double across
    const int64_t b1 = std::min(n, b0 + 4096);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = b0;
    for (; i + 32 <= b1; i += 32) {
      const __m512 e0 = exp16(_mm512_fmsub_ps(_mm512_loadu_ps(x + i), sc, sh));
      const __m512 e1 = exp16(_mm512_fmsub_ps(_mm512_loadu_ps(x + i + 16), sc, sh));
      if (y) {
        _mm512_storeu_ps(y + i, e0);
        _mm512_storeu_ps(y + i + 16, e1);
      }
      s0 = _mm512_add_ps(s0, e0);
      s1 = _mm512_add_ps(s1, e1);
    }
    for (; i < b1; i += 16) {
      const __mmask16 mk = tail_mask(b1 - i);
      const __m512 e =
          _mm512_maskz_mov_ps(mk, exp16(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(mk, x + i), sc, sh)));
      if (y) _mm512_mask_storeu_ps(y + i, mk, e);
      s0 = _mm512_add_ps(s0, e);
    }
    total += double(_mm512_reduce_add_ps(_mm512_add_ps(s0, s1)));
  }
  return total;
}

void max_cols(const float* x, float* colmax, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 mk = tail_mask(n - i);
    _mm512_mask_storeu_ps(colmax + i, mk, _mm512_max_ps(_mm512_maskz_loadu_ps(mk, colmax + i),
                                                        _mm512_maskz_loadu_ps(mk, x + i)));
  }
}

void exp_cols(float* x, const float* shift, float scale, int64_t n, float* colsum) {
  const __m512 sc = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 mk = tail_mask(n - i);
    const __m512 e = exp16(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(mk, x + i), sc,
                                           _mm512_maskz_loadu_ps(mk, shift + i)));
    _mm512_mask_storeu_ps(x + i, mk, e);
    if (colsum)
      _mm512_mask_storeu_ps(colsum + i, mk, _mm512_add_ps(_mm512_maskz_loadu_ps(mk, colsum + i), e));
  }
}

void softmax_grad_cols(float* s, float* dp, const float* lse, const float* D, float scale,
                       int64_t n) {
  const __m512 sc = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 mk = tail_mask(n - i);
    const __m512 p = exp16(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(mk, s + i), sc,
                                           _mm512_maskz_loadu_ps(mk, lse + i)));
    _mm512_mask_storeu_ps(s + i, mk, p);
    const __m512 g = _mm512_sub_ps(_mm512_maskz_loadu_ps(mk, dp + i), _mm512_maskz_loadu_ps(mk, D + i));
    _mm512_mask_storeu_ps(dp + i, mk, _mm512_mul_ps(p, g));
  }
}

// ---- elementwise ----------------------------------------------------------------

void swiglu_forward(const float* g, const float* u, int64_t n, float* a) {
  const __m512 one = _mm512_set1_ps(1.f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 mk = tail_mask(n - i);
    const __m512 gv = _mm512_maskz_loadu_ps(mk, g + i);
    const __m512 den = _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv)));
    _mm512_mask_storeu_ps(a + i, mk,
                          _mm512_mul_ps(_mm512_div_ps(gv, den), _mm512_maskz_loadu_ps(mk, u + i)));
  }
}

void swiglu_backward(const float* g, const float* u, const float* da, int64_t n, float* dg,
                     float* du) {
  const __m512 one = _mm512_set1_ps(1.f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 mk = tail_mask(n - i);
    const __m512 gv = _mm512_maskz_loadu_ps(mk, g + i);
    const __m512 den = _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv)));
    const __m512 sig = _mm512_div_ps(one, den);
    const __m512 silu = _mm512_mul_ps(gv, sig);
    const __m512 d = _mm512_maskz_loadu_ps(mk, da + i);
    const __m512 dsilu = _mm512_mul_ps(sig, _mm512_add_ps(one, _mm512_mul_ps(gv, _mm512_sub_ps(one, sig))));
    _mm512_mask_storeu_ps(dg + i, mk,
                          _mm512_mul_ps(_mm512_mul_ps(d, _mm512_maskz_loadu_ps(mk, u + i)), dsilu));
    _mm512_mask_storeu_ps(du + i, mk, _mm512_mul_ps(d, silu));
  }
}

// A value the compiler must round as written (no FMA contraction across it).
inline __m512 rounded(__m512 x) {
#if defined(__GNUC__)
  __asm__("" : "+v"(x));
#endif
  return x;
}

void adamw(float* p, const float* g, float* m, float* v, int64_t n, const AdamWScalars& s) {
  const __m512 gscale = _mm512_set1_ps(s.grad_scale), decay = _mm512_set1_ps(s.decay);
  const __m512 w = _mm512_set1_ps(s.lerp_weight), w_1 = _mm512_set1_ps(s.lerp_weight - 1.f);
  const __m512 b2 = _mm512_set1_ps(s.beta2), omb2 = _mm512_set1_ps(s.one_minus_beta2);
  const __m512 bc2 = _mm512_set1_ps(s.bc2_sqrt), eps = _mm512_set1_ps(s.eps);
  const __m512 nstep = _mm512_set1_ps(s.neg_step_size);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 mk = tail_mask(n - i);
    const __m512 gv = rounded(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, g + i), gscale));
    const __m512 pv = rounded(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, p + i), decay));
    __m512 mv = _mm512_maskz_loadu_ps(mk, m + i);
    mv = s.lerp_small ? _mm512_fmadd_ps(w, _mm512_sub_ps(gv, mv), mv)
                      : _mm512_fmadd_ps(w_1, _mm512_sub_ps(gv, mv), gv);
    const __m512 vv = _mm512_fmadd_ps(_mm512_mul_ps(omb2, gv), gv,
                                      _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, v + i), b2));
    const __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vv), bc2), eps);
    const __m512 pn = _mm512_add_ps(pv, _mm512_div_ps(_mm512_mul_ps(nstep, mv), denom));
    _mm512_mask_storeu_ps(p + i, mk, pn);
    _mm512_mask_storeu_ps(m + i, mk, mv);
    _mm512_mask_storeu_ps(v + i, mk, vv);
  }
}

}  // namespace

const OpsKernels& kernels_avx512() {
  static const OpsKernels k = {"avx512",       gemm,           dot,      dot_f64,
                               dot3_f64,       max,            exp_sum,  max_cols,
                               exp_cols,       softmax_grad_cols, swiglu_forward, swiglu_backward,
                               adamw};
  return k;
}

}  // namespace ops_detail
}  // namespace ls
