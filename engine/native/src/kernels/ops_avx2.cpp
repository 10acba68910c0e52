// AVX2 + FMA inner kernels for ops.cpp (see ops_internal.h). Compiled with
// -mavx2 -mfma; reached only when active_isa() is Avx2.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>

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

// Lanes [0, n) set (n clamped to 0..8), for maskload / maskstore.
inline __m256i tail_mask(int64_t n) {
  const int k = int(std::max<int64_t>(0, std::min<int64_t>(8, n)));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline double hsum(__m256d v) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
  return _mm_cvtsd_f64(s);
}

inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 2ⁿ for integer-valued n in [-126, 127].
inline __m256 pow2(__m256i n) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
}

// exp(x), the same Cephes polynomial and range handling as the AVX-512 path;
// 2ⁿ is applied as two factors so n in [-127, 128] stays exact.
inline __m256 exp8(__m256 x) {
  const __m256 xc = _mm256_min_ps(_mm256_set1_ps(89.f), _mm256_max_ps(_mm256_set1_ps(-88.f), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.f));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  y = _mm256_mul_ps(_mm256_mul_ps(y, pow2(n1)), pow2(_mm256_sub_epi32(ni, n1)));
  const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654f), _CMP_LT_OQ);
  return _mm256_andnot_ps(tiny, y);
}

// ---- small GEMM: MR rows x (8·NV) columns per tile -------------------------
constexpr int kMR = 6;

// Accumulators are named variables (cM0, cM1), not arrays: GCC keeps an
// array of vectors in memory and stores it back on every k step.
#define LS_OPS_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)

template <bool MASKED>
inline __m256 load_cols(const float* p, __m256i mk) {
  return MASKED ? _mm256_maskload_ps(p, mk) : _mm256_loadu_ps(p);
}
template <bool MASKED>
inline void store_cols(float* p, __m256i mk, __m256 v) {
  if (MASKED) _mm256_maskstore_ps(p, mk, v);
  else _mm256_storeu_ps(p, v);
}

template <int MR, int NV, bool ROW, bool MASKED>
void gemm_tile(int64_t K, const float* A, int64_t sam, int64_t sak, const float* B, int64_t ldb,
               float* C, int64_t ldc, int nn, bool acc) {
  // Masks are built here, not passed: a function taking __m256 arguments gets
  // no vzeroupper, and a dirty upper state slows later SSE code (libm).
  const __m256i mk0 = tail_mask(nn), mk1 = tail_mask(nn - 8);
  // Accumulate onto C: one sequential sum over k whatever the K blocking.
#define LS_INIT(m)                                                             \
  __m256 c##m##0 = _mm256_setzero_ps(), c##m##1 = _mm256_setzero_ps();         \
  const float* a##m = A + (MR > m ? m : 0) * sam;                              \
  if (MR > m && acc) {                                                         \
    c##m##0 = load_cols<MASKED>(C + m * ldc, mk0);                             \
    if (NV > 1) c##m##1 = load_cols<MASKED>(C + m * ldc + 8, mk1);             \
  }
  LS_OPS_ROWS(LS_INIT)
#undef LS_INIT
  for (int64_t k = 0; k < K; ++k) {
    const float* b = B + k * ldb;
    const __m256 b0 = load_cols<MASKED>(b, mk0);
    const __m256 b1 = NV > 1 ? load_cols<MASKED>(b + 8, mk1) : _mm256_setzero_ps();
    const float* ac = A + k * sak;
#define LS_STEP(m)                                                       \
    if (MR > m) {                                                        \
      const __m256 av = _mm256_broadcast_ss(ROW ? a##m + k : ac + m);    \
      c##m##0 = _mm256_fmadd_ps(av, b0, c##m##0);                        \
      if (NV > 1) c##m##1 = _mm256_fmadd_ps(av, b1, c##m##1);            \
    }
    LS_OPS_ROWS(LS_STEP)
#undef LS_STEP
  }
#define LS_STORE(m)                                                      \
  if (MR > m) {                                                          \
    (void)a##m;                                                          \
    store_cols<MASKED>(C + m * ldc, mk0, c##m##0);                       \
    if (NV > 1) store_cols<MASKED>(C + m * ldc + 8, mk1, c##m##1);       \
  }
  LS_OPS_ROWS(LS_STORE)
#undef LS_STORE
}
#undef LS_OPS_ROWS

using Tile = void (*)(int64_t, const float*, int64_t, int64_t, const float*, int64_t, float*,
                      int64_t, int, bool);

template <int NV, bool ROW, bool MASKED>
struct TileRow {
  static constexpr Tile t[kMR] = {
      gemm_tile<1, NV, ROW, MASKED>, gemm_tile<2, NV, ROW, MASKED>, gemm_tile<3, NV, ROW, MASKED>,
      gemm_tile<4, NV, ROW, MASKED>, gemm_tile<5, NV, ROW, MASKED>, gemm_tile<6, NV, ROW, MASKED>};
};
template <int NV, bool ROW, bool MASKED>
constexpr Tile TileRow<NV, ROW, MASKED>::t[kMR];

template <bool ROW>
const Tile* pick_tiles(int64_t nn) {
  if (nn == 16) return TileRow<2, ROW, false>::t;
  if (nn > 8) return TileRow<2, ROW, true>::t;
  if (nn == 8) return TileRow<1, ROW, false>::t;
  return TileRow<1, ROW, true>::t;
}

void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t sam, int64_t sak,
          const float* B, int64_t ldb, float* C, int64_t ldc, bool acc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!acc)
      for (int64_t m = 0; m < M; ++m) std::memset(C + m * ldc, 0, size_t(N) * sizeof(float));
    return;
  }
  const bool row = sak == 1;
  constexpr int64_t KC = 256, NR = 16;
  // B panel [kc, 16] copied contiguous when several row tiles reuse it: B rows
  // at a stride of a multiple of 2 KiB (K/V/dO rows) would share a few L1 sets.
  alignas(32) float panel[KC * NR];
  const bool pack = M > kMR;
  for (int64_t k0 = 0; k0 < K; k0 += KC) {
    const int64_t kc = std::min(KC, K - k0);
    const bool ac = acc || k0 > 0;
    const float* Ak = A + k0 * sak;
    const float* Bk = B + k0 * ldb;
    for (int64_t n0 = 0; n0 < N; n0 += NR) {
      const int64_t nn = std::min<int64_t>(NR, N - n0);
      const float* Bp = Bk + n0;
      int64_t ldp = ldb;
      if (pack) {
        if (nn == NR) {
          for (int64_t k = 0; k < kc; ++k) {
            _mm256_store_ps(panel + k * NR, _mm256_loadu_ps(Bp + k * ldb));
            _mm256_store_ps(panel + k * NR + 8, _mm256_loadu_ps(Bp + k * ldb + 8));
          }
        } else {
          const __m256i mk0 = tail_mask(nn), mk1 = tail_mask(nn - 8);
          for (int64_t k = 0; k < kc; ++k) {
            _mm256_store_ps(panel + k * NR, _mm256_maskload_ps(Bp + k * ldb, mk0));
            _mm256_store_ps(panel + k * NR + 8, _mm256_maskload_ps(Bp + k * ldb + 8, mk1));
          }
        }
        Bp = panel;
        ldp = NR;
      }
      const Tile* tiles = row ? pick_tiles<true>(nn) : pick_tiles<false>(nn);
      for (int64_t m0 = 0; m0 < M; m0 += kMR) {
        const int64_t mr = std::min<int64_t>(kMR, M - m0);
        tiles[mr - 1](kc, Ak + m0 * sam, sam, sak, Bp, ldp, C + m0 * ldc + n0, ldc, int(nn), ac);
      }
    }
  }
}

// ---- reductions ----------------------------------------------------------------

float dot(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i < n; i += 8) {
    const __m256i mk = tail_mask(n - i);
    s0 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, mk), _mm256_maskload_ps(b + i, mk), s0);
  }
  return hsum(_mm256_add_ps(s0, s1));
}

inline __m256d load4_pd(const float* p, int64_t left) {
  if (left >= 4) return _mm256_cvtps_pd(_mm_loadu_ps(p));
  const __m128i mk = _mm_cmpgt_epi32(_mm_set1_epi32(int(left)), _mm_setr_epi32(0, 1, 2, 3));
  return _mm256_cvtps_pd(_mm_maskload_ps(p, mk));
}

double dot_f64(const float* a, const float* b, int64_t n) {
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    s0 = _mm256_fmadd_pd(load4_pd(a + i, 4), load4_pd(b + i, 4), s0);
    s1 = _mm256_fmadd_pd(load4_pd(a + i + 4, 4), load4_pd(b + i + 4, 4), s1);
  }
  for (; i < n; i += 4) s0 = _mm256_fmadd_pd(load4_pd(a + i, n - i), load4_pd(b + i, n - i), s0);
  return hsum(_mm256_add_pd(s0, s1));
}

double dot3_f64(const float* a, const float* b, const float* c, int64_t n) {
  __m256d s = _mm256_setzero_pd();
  for (int64_t i = 0; i < n; i += 4) {
    const int64_t left = n - i;
    s = _mm256_fmadd_pd(_mm256_mul_pd(load4_pd(a + i, left), load4_pd(b + i, left)),
                        load4_pd(c + i, left), s);
  }
  return hsum(s);
}

float max(const float* x, int64_t n) {
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 m0 = ninf, m1 = ninf;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
  }
  for (; i < n; i += 8) {
    const __m256i mk = tail_mask(n - i);
    m0 = _mm256_max_ps(m0, _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + i, mk), _mm256_castsi256_ps(mk)));
  }
  return hmax(_mm256_max_ps(m0, m1));
}

double exp_sum(const float* x, float scale, float shift, float* y, int64_t n) {
  const __m256 sc = _mm256_set1_ps(scale), sh = _mm256_set1_ps(shift);
  double total = 0;
  for (int64_t b0 = 0; b0 < n; b0 += 4096) {  // fp32 partial sums per block, double across
    const int64_t b1 = std::min(n, b0 + 4096);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = b0;
    for (; i + 16 <= b1; i += 16) {
      const __m256 e0 = exp8(_mm256_fmsub_ps(_mm256_loadu_ps(x + i), sc, sh));
      const __m256 e1 = exp8(_mm256_fmsub_ps(_mm256_loadu_ps(x + i + 8), sc, sh));
      if (y) {
        _mm256_storeu_ps(y + i, e0);
        _mm256_storeu_ps(y + i + 8, e1);
      }
      s0 = _mm256_add_ps(s0, e0);
      s1 = _mm256_add_ps(s1, e1);
    }
    for (; i < b1; i += 8) {
      const __m256i mk = tail_mask(b1 - i);
      const __m256 e = _mm256_and_ps(_mm256_castsi256_ps(mk),
                                     exp8(_mm256_fmsub_ps(_mm256_maskload_ps(x + i, mk), sc, sh)));
      if (y) _mm256_maskstore_ps(y + i, mk, e);
      s0 = _mm256_add_ps(s0, e);
    }
    total += double(hsum(_mm256_add_ps(s0, s1)));
  }
  return total;
}

// ---- elementwise ----------------------------------------------------------------
// Each body handles 8 lanes; full vectors use plain loads, the tail masked ones.

template <bool MASKED>
inline __m256 load(const float* p, __m256i mk) {
  return MASKED ? _mm256_maskload_ps(p, mk) : _mm256_loadu_ps(p);
}
template <bool MASKED>
inline void store(float* p, __m256i mk, __m256 v) {
  if (MASKED) _mm256_maskstore_ps(p, mk, v);
  else _mm256_storeu_ps(p, v);
}

template <class Body>
inline void for_lanes(int64_t n, Body&& body) {
  const __m256i all = _mm256_set1_epi32(-1);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) body(i, all, std::false_type());
  if (i < n) body(i, tail_mask(n - i), std::true_type());
}

void swiglu_forward(const float* g, const float* u, int64_t n, float* a) {
  const __m256 one = _mm256_set1_ps(1.f);
  for_lanes(n, [&](int64_t i, __m256i mk, auto masked) {
    constexpr bool M = decltype(masked)::value;
    const __m256 gv = load<M>(g + i, mk);
    const __m256 den = _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv)));
    store<M>(a + i, mk, _mm256_mul_ps(_mm256_div_ps(gv, den), load<M>(u + i, mk)));
  });
}

void swiglu_backward(const float* g, const float* u, const float* da, int64_t n, float* dg,
                     float* du) {
  const __m256 one = _mm256_set1_ps(1.f);
  for_lanes(n, [&](int64_t i, __m256i mk, auto masked) {
    constexpr bool M = decltype(masked)::value;
    const __m256 gv = load<M>(g + i, mk);
    const __m256 den = _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv)));
    const __m256 sig = _mm256_div_ps(one, den);
    const __m256 silu = _mm256_mul_ps(gv, sig);
    const __m256 d = load<M>(da + i, mk);
    const __m256 dsilu =
        _mm256_mul_ps(sig, _mm256_add_ps(one, _mm256_mul_ps(gv, _mm256_sub_ps(one, sig))));
    store<M>(dg + i, mk, _mm256_mul_ps(_mm256_mul_ps(d, load<M>(u + i, mk)), dsilu));
    store<M>(du + i, mk, _mm256_mul_ps(d, silu));
  });
}

// A value the compiler must round as written (no FMA contraction across it).
inline __m256 rounded(__m256 x) {
#if defined(__GNUC__)
  __asm__("" : "+x"(x));
#endif
  return x;
}

void adamw(float* p, const float* g, float* m, float* v, int64_t n, const AdamWScalars& s) {
  const __m256 gscale = _mm256_set1_ps(s.grad_scale), decay = _mm256_set1_ps(s.decay);
  const __m256 w = _mm256_set1_ps(s.lerp_weight), w_1 = _mm256_set1_ps(s.lerp_weight - 1.f);
  const __m256 b2 = _mm256_set1_ps(s.beta2), omb2 = _mm256_set1_ps(s.one_minus_beta2);
  const __m256 bc2 = _mm256_set1_ps(s.bc2_sqrt), eps = _mm256_set1_ps(s.eps);
  const __m256 nstep = _mm256_set1_ps(s.neg_step_size);
  const bool small = s.lerp_small;
  for_lanes(n, [&](int64_t i, __m256i mk, auto masked) {
    constexpr bool M = decltype(masked)::value;
    const __m256 gv = rounded(_mm256_mul_ps(load<M>(g + i, mk), gscale));
    const __m256 pv = rounded(_mm256_mul_ps(load<M>(p + i, mk), decay));
    __m256 mv = load<M>(m + i, mk);
    mv = small ? _mm256_fmadd_ps(w, _mm256_sub_ps(gv, mv), mv)
               : _mm256_fmadd_ps(w_1, _mm256_sub_ps(gv, mv), gv);
    const __m256 vv =
        _mm256_fmadd_ps(_mm256_mul_ps(omb2, gv), gv, _mm256_mul_ps(load<M>(v + i, mk), b2));
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vv), bc2), eps);
    store<M>(p + i, mk, _mm256_add_ps(pv, _mm256_div_ps(_mm256_mul_ps(nstep, mv), denom)));
    store<M>(m + i, mk, mv);
    store<M>(v + i, mk, vv);
  });
}

void max_cols(const float* x, float* colmax, int64_t n) {
  for_lanes(n, [&](int64_t i, __m256i mk, auto masked) {
    constexpr bool M = decltype(masked)::value;
    store<M>(colmax + i, mk, _mm256_max_ps(load<M>(colmax + i, mk), load<M>(x + i, mk)));
  });
}

void exp_cols(float* x, const float* shift, float scale, int64_t n, float* colsum) {
  const __m256 sc = _mm256_set1_ps(scale);
  for_lanes(n, [&](int64_t i, __m256i mk, auto masked) {
    constexpr bool M = decltype(masked)::value;
    const __m256 e = exp8(_mm256_fmsub_ps(load<M>(x + i, mk), sc, load<M>(shift + i, mk)));
    store<M>(x + i, mk, e);
    if (colsum) store<M>(colsum + i, mk, _mm256_add_ps(load<M>(colsum + i, mk), e));
  });
}

void softmax_grad_cols(float* s, float* dp, const float* lse, const float* D, float scale,
                       int64_t n) {
  const __m256 sc = _mm256_set1_ps(scale);
  for_lanes(n, [&](int64_t i, __m256i mk, auto masked) {
    constexpr bool M = decltype(masked)::value;
    const __m256 p = exp8(_mm256_fmsub_ps(load<M>(s + i, mk), sc, load<M>(lse + i, mk)));
    store<M>(s + i, mk, p);
    store<M>(dp + i, mk, _mm256_mul_ps(p, _mm256_sub_ps(load<M>(dp + i, mk), load<M>(D + i, mk))));
  });
}

}  // namespace

const OpsKernels& kernels_avx2() {
  static const OpsKernels k = {"avx2",         gemm,           dot,      dot_f64,
                               dot3_f64,       max,            exp_sum,  max_cols,
                               exp_cols,       softmax_grad_cols, swiglu_forward, swiglu_backward,
                               adamw};
  return k;
}

}  // namespace ops_detail
}  // namespace ls
