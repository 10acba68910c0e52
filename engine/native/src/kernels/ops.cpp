// Transformer ops (see ops.h): the scalar references, the portable inner
// kernels, and the threaded drivers that run on whichever inner-kernel table
// (ops_internal.h) active_isa() selects.
//
// Attention layout used inside the drivers: score tiles are held transposed,
// ST[key j][query i] (row length ld, a multiple of 16), so that
//   scores  ST = K · Qᵀ          (A = K rows,  B = Qᵀ packed per query block)
//   output  O  = STᵀ · V         (A = ST read column-wise, B = V rows)
//   dV += Pᵀ·dO, dK += dSᵀ·Q     (A = P / dS rows, B = dO / Q rows)
//   dQ  = dS · K                 (A = dS read column-wise, B = K rows)
// are all one small-GEMM shape (ops_internal.h), and the softmax reductions
// over keys are elementwise over a row of queries (vectorisable, no
// horizontal sums).
//
// Attention conventions beyond ops.h:
//   * a stride of 0 in AttentionShape means contiguous (q/out: H·Hd, k/v:
//     KV·Hd, kv batch: S·kv_stride);
//   * backward writes dq with q's strides, dk/dv with k/v's, and reads dout
//     with out's; scale must be > 0.
//   * Forward: tasks are (batch, kv head, block of queries) with the group's
//     query heads as extra score columns; per-thread scratch is about
//     (S + 2·Hd)·64 floats. With q_len <= 4 and no segments (generation) the
//     keys are split into chunks of 256 instead (all heads per task, partial
//     softmaxes merged in chunk order), which streams the KV cache once.
//   * Backward, flash-attention style (P recomputed from lse, never stored
//     beyond a tile): pass A, tasks (batch, kv head, key block), owns dK/dV
//     rows and loops over the group's query heads; pass B, tasks (batch,
//     head, query block), owns dQ rows. No atomics and no reduction across
//     threads. Scratch: Qᵀ and dOᵀ [B, H, Hd, T+pad] once per call, and
//     2·128·64 floats per thread.
//   * Every GEMM accumulates onto C in one sequential sum over k, and every
//     column sees the same fp32 operations whatever block it is in, so the
//     results depend neither on the thread count nor on run-to-run
//     scheduling.
#include "ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "../common/cpu.h"
#include "../common/memory.h"
#include "../common/threads.h"
#include "ops_internal.h"

namespace ls {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
inline int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }
}  // namespace

// ============================================================================
// Portable inner kernels (plain C++; the compiler vectorises what it can)
// ============================================================================
namespace ops_detail {
namespace {

// Generic tile (any nn <= kPortableNR), plain loops: tails, and compilers
// without vector extensions.
constexpr int kPortableMR = 4;
#if defined(__aarch64__)
constexpr int kPortableNV = 4;  // 32 NEON registers: 4x16 accumulators
#else
constexpr int kPortableNV = 2;  // 16 SSE registers: 4x8 accumulators
#endif
constexpr int kPortableNR = 4 * kPortableNV;

template <int MR, bool ROW>
void gemm_tile_generic(int64_t K, const float* A, int64_t sam, int64_t sak, const float* B,
                       int64_t ldb, float* C, int64_t ldc, int nn, bool acc) {
  float c[MR][kPortableNR] = {};
  if (acc)  // accumulate onto C: one sequential sum over k
    for (int m = 0; m < MR; ++m)
      for (int n = 0; n < nn; ++n) c[m][n] = C[m * ldc + n];
  for (int64_t k = 0; k < K; ++k) {
    const float* b = B + k * ldb;
    for (int m = 0; m < MR; ++m) {
      const float a = ROW ? A[m * sam + k] : A[k * sak + m];
      for (int n = 0; n < nn; ++n) c[m][n] += a * b[n];
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int n = 0; n < nn; ++n) C[m * ldc + n] = c[m][n];
}

#if defined(__GNUC__) || defined(__clang__)
// Full-width tile with GCC/Clang vector extensions (SSE2 / NEON), the
// accumulators as named variables so they stay in registers.
typedef float V4 __attribute__((vector_size(16)));
inline V4 load4(const float* p) {
  V4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store4(float* p, V4 v) { std::memcpy(p, &v, sizeof v); }

#define LS_TILE_ROWS(X) X(0) X(1) X(2) X(3)
template <int MR, bool ROW>
void gemm_tile_full(int64_t K, const float* A, int64_t sam, int64_t sak, const float* B,
                    int64_t ldb, float* C, int64_t ldc, int, bool acc) {
  constexpr int NV = kPortableNV;
#define LS_INIT(m)                                                        \
  V4 c##m##0 = {}, c##m##1 = {}, c##m##2 = {}, c##m##3 = {};             \
  const float* a##m = A + (MR > m ? m : 0) * sam;                         \
  if (MR > m && acc) {                                                    \
    c##m##0 = load4(C + m * ldc);                                         \
    c##m##1 = load4(C + m * ldc + 4);                                     \
    if (NV > 2) c##m##2 = load4(C + m * ldc + 8);                         \
    if (NV > 2) c##m##3 = load4(C + m * ldc + 12);                        \
  }
  LS_TILE_ROWS(LS_INIT)
#undef LS_INIT
  for (int64_t k = 0; k < K; ++k) {
    const float* b = B + k * ldb;
    const V4 b0 = load4(b), b1 = load4(b + 4);
    const V4 b2 = NV > 2 ? load4(b + 8) : V4{}, b3 = NV > 2 ? load4(b + 12) : V4{};
    const float* ac = A + k * sak;
#define LS_STEP(m)                                  \
    if (MR > m) {                                   \
      const V4 av = V4{} + (ROW ? a##m[k] : ac[m]); \
      c##m##0 += av * b0;                           \
      c##m##1 += av * b1;                           \
      if (NV > 2) c##m##2 += av * b2;               \
      if (NV > 2) c##m##3 += av * b3;               \
    }
    LS_TILE_ROWS(LS_STEP)
#undef LS_STEP
  }
#define LS_STORE(m)                                      \
  if (MR > m) {                                          \
    (void)a##m;                                          \
    store4(C + m * ldc, c##m##0);                        \
    store4(C + m * ldc + 4, c##m##1);                    \
    if (NV > 2) store4(C + m * ldc + 8, c##m##2);        \
    if (NV > 2) store4(C + m * ldc + 12, c##m##3);       \
  }
  LS_TILE_ROWS(LS_STORE)
#undef LS_STORE
}
#undef LS_TILE_ROWS
#else
template <int MR, bool ROW>
void gemm_tile_full(int64_t K, const float* A, int64_t sam, int64_t sak, const float* B,
                    int64_t ldb, float* C, int64_t ldc, int nn, bool acc) {
  gemm_tile_generic<MR, ROW>(K, A, sam, sak, B, ldb, C, ldc, nn, acc);
}
#endif

using PortableTile = void (*)(int64_t, const float*, int64_t, int64_t, const float*, int64_t,
                              float*, int64_t, int, bool);
// [full width][row A][rows - 1]
const PortableTile kPortableTiles[2][2][kPortableMR] = {
    {{gemm_tile_generic<1, false>, gemm_tile_generic<2, false>, gemm_tile_generic<3, false>,
      gemm_tile_generic<4, false>},
     {gemm_tile_generic<1, true>, gemm_tile_generic<2, true>, gemm_tile_generic<3, true>,
      gemm_tile_generic<4, true>}},
    {{gemm_tile_full<1, false>, gemm_tile_full<2, false>, gemm_tile_full<3, false>,
      gemm_tile_full<4, false>},
     {gemm_tile_full<1, true>, gemm_tile_full<2, true>, gemm_tile_full<3, true>,
      gemm_tile_full<4, true>}}};

void gemm_portable(int64_t M, int64_t N, int64_t K, const float* A, int64_t sam, int64_t sak,
                   const float* B, int64_t ldb, float* C, int64_t ldc, bool acc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!acc)
      for (int64_t m = 0; m < M; ++m) std::memset(C + m * ldc, 0, size_t(N) * sizeof(float));
    return;
  }
  const int row = sak == 1 ? 1 : 0;
  const int64_t KC = 256;
  for (int64_t k0 = 0; k0 < K; k0 += KC) {
    const int64_t kc = std::min(KC, K - k0);
    const bool ac = acc || k0 > 0;
    for (int64_t n0 = 0; n0 < N; n0 += kPortableNR) {
      const int nn = int(std::min<int64_t>(kPortableNR, N - n0));
      const PortableTile* tiles = kPortableTiles[nn == kPortableNR ? 1 : 0][row];
      for (int64_t m0 = 0; m0 < M; m0 += kPortableMR) {
        const int mr = int(std::min<int64_t>(kPortableMR, M - m0));
        tiles[mr - 1](kc, A + m0 * sam + k0 * sak, sam, sak, B + k0 * ldb + n0, ldb,
                      C + m0 * ldc + n0, ldc, nn, ac);
      }
    }
  }
}

float dot_portable(const float* a, const float* b, int64_t n) {
  float acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

double dot_f64_portable(const float* a, const float* b, int64_t n) {
  double acc[4] = {};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int l = 0; l < 4; ++l) acc[l] += double(a[i + l]) * double(b[i + l]);
  double s = (acc[0] + acc[2]) + (acc[1] + acc[3]);
  for (; i < n; ++i) s += double(a[i]) * double(b[i]);
  return s;
}

double dot3_f64_portable(const float* a, const float* b, const float* c, int64_t n) {
  double acc[4] = {};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int l = 0; l < 4; ++l) acc[l] += double(a[i + l]) * double(b[i + l]) * double(c[i + l]);
  double s = (acc[0] + acc[2]) + (acc[1] + acc[3]);
  for (; i < n; ++i) s += double(a[i]) * double(b[i]) * double(c[i]);
  return s;
}

float max_portable(const float* x, int64_t n) {
  float m = kNegInf;
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

double exp_sum_portable(const float* x, float scale, float shift, float* y, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float e = std::exp(x[i] * scale - shift);
    if (y) y[i] = e;
    s += e;
  }
  return s;
}

void max_cols_portable(const float* x, float* colmax, int64_t n) {
  for (int64_t i = 0; i < n; ++i) colmax[i] = x[i] > colmax[i] ? x[i] : colmax[i];
}

void exp_cols_portable(float* x, const float* shift, float scale, int64_t n, float* colsum) {
  for (int64_t i = 0; i < n; ++i) x[i] = std::exp(x[i] * scale - shift[i]);
  if (colsum)
    for (int64_t i = 0; i < n; ++i) colsum[i] += x[i];
}

void softmax_grad_cols_portable(float* s, float* dp, const float* lse, const float* D,
                                float scale, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float p = std::exp(s[i] * scale - lse[i]);
    s[i] = p;
    dp[i] = p * (dp[i] - D[i]);
  }
}

void swiglu_forward_portable(const float* g, const float* u, int64_t n, float* a) {
  for (int64_t i = 0; i < n; ++i) a[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
}

void swiglu_backward_portable(const float* g, const float* u, const float* da, int64_t n,
                              float* dg, float* du) {
  for (int64_t i = 0; i < n; ++i) {
    const float den = 1.f + std::exp(-g[i]);
    const float sig = 1.f / den, silu = g[i] / den;
    const float d = da[i];
    dg[i] = d * u[i] * (sig * (1.f + g[i] * (1.f - sig)));
    du[i] = d * silu;
  }
}

// A value the compiler must round as written: GCC contracts a*b + c into an
// FMA by default (-ffp-contract=fast), which would change AdamW's bits.
inline float rounded(float x) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __asm__("" : "+x"(x));
#elif defined(__GNUC__) && defined(__aarch64__)
  __asm__("" : "+w"(x));
#endif
  return x;
}

// One element of torch.optim.AdamW's single-tensor step with the fp32
// operations of torch's vectorised CPU kernels: lerp_ is fma(w, g-m, m) (or
// fma(w-1, g-m, g) for w >= 0.5), addcmul_ is fma(c·g, g, v·β2), addcdiv_ is
// p + (s·m)/denom. (torch's sqrt may come from MKL and differ in the last bit.)
inline void adamw_element(float& p, float g, float& m, float& v, const AdamWScalars& s) {
  const float gs = rounded(g * s.grad_scale);
  p = rounded(p * s.decay);
  m = s.lerp_small ? std::fma(s.lerp_weight, gs - m, m) : std::fma(s.lerp_weight - 1.f, gs - m, gs);
  v = std::fma(s.one_minus_beta2 * gs, gs, v * s.beta2);
  const float denom = std::sqrt(v) / s.bc2_sqrt + s.eps;
  p = p + s.neg_step_size * m / denom;
}

void adamw_portable(float* p, const float* g, float* m, float* v, int64_t n,
                    const AdamWScalars& s) {
  for (int64_t i = 0; i < n; ++i) adamw_element(p[i], g[i], m[i], v[i], s);
}

}  // namespace

const OpsKernels& kernels_portable() {
  static const OpsKernels k = {"portable",
                               gemm_portable,
                               dot_portable,
                               dot_f64_portable,
                               dot3_f64_portable,
                               max_portable,
                               exp_sum_portable,
                               max_cols_portable,
                               exp_cols_portable,
                               softmax_grad_cols_portable,
                               swiglu_forward_portable,
                               swiglu_backward_portable,
                               adamw_portable};
  return k;
}

const OpsKernels& active_kernels() {
#if defined(LS_HAVE_X86_KERNELS)
  switch (active_isa()) {
    case Isa::Avx512: return kernels_avx512();
    case Isa::Avx2: return kernels_avx2();
    default: break;
  }
#endif
  return kernels_portable();
}

AdamWScalars adamw_scalars(const AdamWParams& a) {
  // torch computes these with Python floats (double); the tensor kernels then
  // use them as fp32 scalars.
  const double lr = a.lr, wd = a.weight_decay, b1 = a.beta1, b2 = a.beta2;
  const double step = double(a.step);
  const double bc1 = 1.0 - std::pow(b1, step);
  const double bc2 = 1.0 - std::pow(b2, step);
  AdamWScalars s;
  s.grad_scale = a.grad_scale;
  s.decay = float(1.0 - lr * wd);
  s.lerp_weight = float(1.0 - b1);
  s.lerp_small = std::fabs(s.lerp_weight) < 0.5f;
  s.beta2 = float(b2);
  s.one_minus_beta2 = float(1.0 - b2);
  s.bc2_sqrt = float(std::sqrt(bc2));
  s.eps = a.eps;
  s.neg_step_size = float(-(lr / bc1));
  return s;
}

}  // namespace ops_detail

using ops_detail::active_kernels;
using ops_detail::OpsKernels;

// ============================================================================
// RMSNorm
// ============================================================================

void rmsnorm_forward_reference(const float* x, const float* w, int64_t rows, int64_t dim,
                               float eps, float* y, float* rstd) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double(xr[i]) * double(xr[i]);
    const float rs = 1.f / std::sqrt(float(ss / double(dim)) + eps);
    rstd[r] = rs;
    float* yr = y + r * dim;
    for (int64_t i = 0; i < dim; ++i) yr[i] = w[i] * (xr[i] * rs);
  }
}

void rmsnorm_forward(const float* x, const float* w, int64_t rows, int64_t dim, float eps,
                     float* y, float* rstd) {
  const OpsKernels& K = active_kernels();
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, dim)),
               [&](int64_t r0, int64_t r1, int) {
                 for (int64_t r = r0; r < r1; ++r) {
                   const float* xr = x + r * dim;
                   const double ss = K.dot_f64(xr, xr, dim);
                   const float rs = 1.f / std::sqrt(float(ss / double(dim)) + eps);
                   rstd[r] = rs;
                   float* yr = y + r * dim;
                   for (int64_t i = 0; i < dim; ++i) yr[i] = w[i] * (xr[i] * rs);
                 }
               });
}

// y = w⊙x·r, r = (Σx²/D + eps)^-½:  dx = r·w⊙dy − x·r³/D·Σ(w⊙dy⊙x)
void rmsnorm_backward_reference(const float* x, const float* w, const float* rstd,
                                const float* dy, int64_t rows, int64_t dim, float* dx,
                                bool accumulate) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    const float* dyr = dy + r * dim;
    float* dxr = dx + r * dim;
    double s = 0;
    for (int64_t i = 0; i < dim; ++i) s += double(w[i]) * double(dyr[i]) * double(xr[i]);
    const double rs = rstd[r];
    const float c = float(rs * rs * rs * s / double(dim));
    const float rsf = rstd[r];
    for (int64_t i = 0; i < dim; ++i) {
      const float g = rsf * w[i] * dyr[i] - c * xr[i];
      dxr[i] = accumulate ? dxr[i] + g : g;
    }
  }
}

void rmsnorm_backward(const float* x, const float* w, const float* rstd, const float* dy,
                      int64_t rows, int64_t dim, float* dx, bool accumulate) {
  const OpsKernels& K = active_kernels();
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, dim)),
               [&](int64_t r0, int64_t r1, int) {
                 for (int64_t r = r0; r < r1; ++r) {
                   const float* xr = x + r * dim;
                   const float* dyr = dy + r * dim;
                   float* dxr = dx + r * dim;
                   const double s = K.dot3_f64(w, dyr, xr, dim);
                   const double rs = rstd[r];
                   const float c = float(rs * rs * rs * s / double(dim));
                   const float rsf = rstd[r];
                   if (accumulate) {
                     for (int64_t i = 0; i < dim; ++i) dxr[i] += rsf * w[i] * dyr[i] - c * xr[i];
                   } else {
                     for (int64_t i = 0; i < dim; ++i) dxr[i] = rsf * w[i] * dyr[i] - c * xr[i];
                   }
                 }
               });
}

// ============================================================================
// RoPE
// ============================================================================
namespace {

// cos/sin of float(position)·inv_freq[i] (fp32 angle), evaluated in double.
inline void rope_angles(int32_t position, const float* inv_freq, int64_t half, float* c,
                        float* s) {
  const float pos = float(position);
  for (int64_t i = 0; i < half; ++i) {
    const float angle = pos * inv_freq[i];
    c[i] = float(std::cos(double(angle)));
    s[i] = float(std::sin(double(angle)));
  }
}

// Rotates every head of one token row; inverse=true rotates by −angle.
inline void rope_row(float* x, int64_t heads, int64_t head_dim, const float* c, const float* s,
                     bool inverse) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < heads; ++h) {
    float* x1 = x + h * head_dim;
    float* x2 = x1 + half;
    if (!inverse) {
      for (int64_t i = 0; i < half; ++i) {
        const float a = x1[i], b = x2[i];
        x1[i] = a * c[i] - b * s[i];
        x2[i] = b * c[i] + a * s[i];
      }
    } else {
      for (int64_t i = 0; i < half; ++i) {
        const float a = x1[i], b = x2[i];
        x1[i] = a * c[i] + b * s[i];
        x2[i] = b * c[i] - a * s[i];
      }
    }
  }
}

// Floats of cos/sin scratch: a table [span, cos|sin] when positions repeat
// across sequences (span <= rows), else one row per thread.
int64_t rope_scratch_floats(int64_t rows, int64_t span, int64_t head_dim, int threads) {
  if (rows <= 0 || head_dim < 2) return 0;
  const int64_t half = head_dim / 2;
  return span <= rows ? span * 2 * half : int64_t(threads) * 2 * half;
}

void rope_apply(float* x, int64_t rows, int64_t heads, int64_t head_dim,
                const int32_t* positions, const float* inv_freq, bool inverse) {
  if (rows <= 0 || head_dim < 2) return;
  const int64_t half = head_dim / 2, width = heads * head_dim;
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, width));
  int32_t pmin = positions[0], pmax = positions[0];
  for (int64_t r = 1; r < rows; ++r) {
    pmin = std::min(pmin, positions[r]);
    pmax = std::max(pmax, positions[r]);
  }
  const int64_t span = int64_t(pmax) - int64_t(pmin) + 1;
  const int64_t scratch_floats = rope_scratch_floats(rows, span, head_dim, num_threads());
  if (span <= rows) {
    // Positions repeat across sequences: one cos/sin table over the span.
    Buffer<float> table(MemCategory::Workspace, size_t(scratch_floats));  // [span, cos|sin]
    parallel_for(span, 16, [&](int64_t p0, int64_t p1, int) {
      for (int64_t p = p0; p < p1; ++p)
        rope_angles(int32_t(pmin + p), inv_freq, half, table.data() + p * 2 * half,
                    table.data() + p * 2 * half + half);
    });
    parallel_for(rows, grain, [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* c = table.data() + (positions[r] - pmin) * 2 * half;
        rope_row(x + r * width, heads, head_dim, c, c + half, inverse);
      }
    });
    return;
  }
  Buffer<float> scratch(MemCategory::Workspace, size_t(scratch_floats));  // [threads, cos|sin]
  parallel_for(rows, grain, [&](int64_t r0, int64_t r1, int thread) {
    float* c = scratch.data() + thread * 2 * half;
    for (int64_t r = r0; r < r1; ++r) {
      rope_angles(positions[r], inv_freq, half, c, c + half);
      rope_row(x + r * width, heads, head_dim, c, c + half, inverse);
    }
  });
}

}  // namespace

void rope_forward_reference(float* x, int64_t rows, int64_t heads, int64_t head_dim,
                            const int32_t* positions, const float* inv_freq) {
  const int64_t half = head_dim / 2;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t h = 0; h < heads; ++h) {
      float* xh = x + (r * heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float angle = float(positions[r]) * inv_freq[i];
        const float c = float(std::cos(double(angle)));
        const float s = float(std::sin(double(angle)));
        const float a = xh[i], b = xh[i + half];
        xh[i] = a * c - b * s;
        xh[i + half] = b * c + a * s;
      }
    }
  }
}

void rope_forward(float* x, int64_t rows, int64_t heads, int64_t head_dim,
                  const int32_t* positions, const float* inv_freq) {
  rope_apply(x, rows, heads, head_dim, positions, inv_freq, false);
}

void rope_backward(float* dx, int64_t rows, int64_t heads, int64_t head_dim,
                   const int32_t* positions, const float* inv_freq) {
  rope_apply(dx, rows, heads, head_dim, positions, inv_freq, true);
}

int64_t rope_workspace_bytes(int64_t rows, int64_t position_span, int64_t head_dim, int threads) {
  return rope_scratch_floats(rows, position_span, head_dim, threads) * int64_t(sizeof(float));
}

// ============================================================================
// Attention
// ============================================================================
namespace {

// The shape with defaults filled in: a stride of 0 means contiguous.
struct Attn {
  int64_t B, T, S, H, KV, Hd, group, q_off;
  int64_t qs, kvs, kvbs, os;  // row strides of q/dq, k/v/dk/dv, out/dout; batch stride of k/v
  float scale;
  explicit Attn(const AttentionShape& s)
      : B(s.batch), T(s.q_len), S(s.kv_len), H(s.heads), KV(s.kv_heads), Hd(s.head_dim),
        group(s.heads / std::max<int64_t>(1, s.kv_heads)), q_off(s.q_offset),
        qs(s.q_stride ? s.q_stride : s.heads * s.head_dim),
        kvs(s.kv_stride ? s.kv_stride : s.kv_heads * s.head_dim),
        kvbs(s.kv_batch_stride ? s.kv_batch_stride : s.kv_len * kvs),
        os(s.out_stride ? s.out_stride : s.heads * s.head_dim), scale(s.scale) {}
  // Last key query t sees (causal).
  int32_t last_key(int64_t t) const { return int32_t(std::min(q_off + t, S - 1)); }
  bool empty() const { return B <= 0 || T <= 0 || S <= 0 || H <= 0 || Hd <= 0; }
};

// lo[b*T + t] = first key of query t's segment: the first position whose
// segment id equals segments[b*T + t] (ids need not be contiguous runs).
// Workspace: lo [B*T] int32 (kept by the caller), runs [T] int64 while it runs.
Buffer<int32_t> segment_first_keys(const int32_t* seg, int64_t B, int64_t T) {
  Buffer<int32_t> lo(MemCategory::Workspace, size_t(B * T));
  Buffer<int64_t> runs(MemCategory::Workspace, size_t(T));  // value·2³² + start, sorted
  for (int64_t b = 0; b < B; ++b) {
    const int32_t* sb = seg + b * T;
    int64_t n = 0;
    for (int64_t t = 0; t < T; ++t)
      if (t == 0 || sb[t] != sb[t - 1]) runs[n++] = int64_t(sb[t]) * 4294967296LL + t;
    std::sort(runs.data(), runs.data() + n);
    int32_t first = 0;
    for (int64_t t = 0; t < T; ++t) {
      if (t == 0 || sb[t] != sb[t - 1]) {
        const int64_t base = int64_t(sb[t]) * 4294967296LL;
        first = int32_t(*std::lower_bound(runs.data(), runs.data() + n, base) - base);
      }
      lo[b * T + t] = first;
    }
  }
  return lo;
}

// Per-query-column visibility of one block of queries t0..t0+n-1 of batch b:
// key j is visible to column i iff lo[i] <= j <= hi[i] and (no segments or
// segk[j] == sq[i]).
struct QueryCols {
  int32_t* lo;
  int32_t* hi;
  int32_t* sq;
  int32_t min_lo = 0, max_lo = 0, min_hi = 0, max_hi = 0;
  bool one_segment = true;  // every column has the same segment id sq[0]
  QueryCols(int32_t* ints, int64_t ld) : lo(ints), hi(ints + ld), sq(ints + 2 * ld) {}
  // Columns are reps copies of queries t0..t0+n-1 (column c is query t0 + c % n).
  void fill(const Attn& a, const int32_t* seg, const int32_t* seg_lo, int64_t b, int64_t t0,
            int64_t n, int64_t reps = 1) {
    min_lo = min_hi = std::numeric_limits<int32_t>::max();
    max_lo = max_hi = -1;
    one_segment = true;
    for (int64_t i = 0; i < n * reps; ++i) {
      const int64_t t = t0 + i % n;
      lo[i] = seg ? seg_lo[b * a.T + t] : 0;
      hi[i] = a.last_key(t);
      sq[i] = seg ? seg[b * a.T + t] : 0;
      min_lo = std::min(min_lo, lo[i]);
      max_lo = std::max(max_lo, lo[i]);
      min_hi = std::min(min_hi, hi[i]);
      max_hi = std::max(max_hi, hi[i]);
      one_segment &= sq[i] == sq[0];
    }
  }
};

// ST[j][i] ← −inf where key key0+j is not visible to column i (rows every
// column sees are left alone).
void mask_scores(float* ST, int64_t ld, int64_t rows, int64_t key0, int64_t n, const QueryCols& c,
                 const int32_t* segk) {
  for (int64_t j = 0; j < rows; ++j) {
    float* row = ST + j * ld;
    const int32_t kj = int32_t(key0 + j);
    if (kj >= c.max_lo && kj <= c.min_hi && (!segk || (c.one_segment && segk[kj] == c.sq[0])))
      continue;
    if (segk) {
      const int32_t s = segk[kj];
      for (int64_t i = 0; i < n; ++i) {
        const bool ok = (kj >= c.lo[i]) & (kj <= c.hi[i]) & (s == c.sq[i]);
        row[i] = ok ? row[i] : kNegInf;
      }
    } else {
      for (int64_t i = 0; i < n; ++i) {
        const bool ok = (kj >= c.lo[i]) & (kj <= c.hi[i]);
        row[i] = ok ? row[i] : kNegInf;
      }
    }
  }
}

// Xt[d][i] = X[i*stride + d] for i < n (packs a block of query-side rows),
// 16 rows at a time so the stores are contiguous.
void pack_transposed(const float* X, int64_t stride, int64_t n, int64_t Hd, float* Xt,
                     int64_t ld) {
  for (int64_t i0 = 0; i0 < n; i0 += 16) {
    const int64_t ni = std::min<int64_t>(16, n - i0);
    const float* xb = X + i0 * stride;
    for (int64_t d = 0; d < Hd; ++d) {
      float* dst = Xt + d * ld + i0;
      for (int64_t i = 0; i < ni; ++i) dst[i] = xb[i * stride + d];
    }
  }
}

// Block size for a task count: start at `start`, halve (not below min_blk)
// while there are fewer than 4 tasks per thread.
int64_t pick_block(int64_t start, int64_t len, int64_t other_tasks, int threads,
                   int64_t min_blk = 16) {
  const int64_t want = 4 * int64_t(threads);
  int64_t blk = start;
  while (blk > min_blk && other_tasks * ceil_div(len, blk) < want) blk /= 2;
  return std::max<int64_t>(1, std::min(blk, len));
}

// ---- forward: one block of nq queries of all the query heads of one (batch,
// kv head) --------------------------------------------------------------------
// The group's heads are extra score columns (column c = head g·group + c/nq,
// query t0 + c%nq), so each K/V row is read once per KV head, which is what
// bounds generation with a long cache.
// Scratch: Qt [Hd, ld], ST [S, ld], colmax/colsum [ld], O [ld, Hd]; ints 3·ld.
void forward_block(const Attn& a, const OpsKernels& Kn, int64_t b, int64_t g, int64_t t0,
                   int64_t nq, const float* q, const float* k, const float* v, const int32_t* seg,
                   const int32_t* seg_lo, float* out, float* lse, float* fs, int32_t* is,
                   int64_t ld_max) {
  const int64_t cols = a.group * nq;
  const int64_t ld = round_up(cols, 16);
  float* Qt = fs;
  float* ST = Qt + a.Hd * ld_max;
  float* colmax = ST + a.S * ld_max;
  float* colsum = colmax + ld_max;
  float* O = colsum + ld_max;
  QueryCols c(is, ld_max);
  c.fill(a, seg, seg_lo, b, t0, nq, a.group);
  const int64_t klo = c.min_lo, L = int64_t(c.max_hi) - klo + 1;
  const float* Kb = k + b * a.kvbs + klo * a.kvs + g * a.Hd;
  const float* Vb = v + b * a.kvbs + klo * a.kvs + g * a.Hd;
  const float* Qb = q + (b * a.T + t0) * a.qs + g * a.group * a.Hd;  // head g·group, query t0

  // ST[j][c] = K[klo+j] · Q[c]. Every column gets the same sequence of fp32
  // operations whatever block it falls in, so results do not depend on the
  // block size (nor, through it, on the thread count).
  for (int64_t hh = 0; hh < a.group; ++hh)
    pack_transposed(Qb + hh * a.Hd, a.qs, nq, a.Hd, Qt + hh * nq, ld);
  Kn.gemm(L, cols, a.Hd, Kb, a.kvs, 1, Qt, ld, ST, ld, false);
  mask_scores(ST, ld, L, klo, cols, c, seg ? seg + b * a.T : nullptr);
  // Softmax of scale·ST over keys (scale > 0, so max(scale·s) = scale·max(s)).
  for (int64_t i = 0; i < cols; ++i) colmax[i] = kNegInf, colsum[i] = 0.f;
  for (int64_t j = 0; j < L; ++j) Kn.max_cols(ST + j * ld, colmax, cols);
  for (int64_t i = 0; i < cols; ++i) colmax[i] *= a.scale;
  for (int64_t j = 0; j < L; ++j) Kn.exp_cols(ST + j * ld, colmax, a.scale, cols, colsum);
  // O[c] = Σ_j P[j][c] V[klo+j], then normalised into out and lse.
  Kn.gemm(cols, a.Hd, L, ST, 1, ld, Vb, a.kvs, O, a.Hd, false);
  for (int64_t i = 0; i < cols; ++i) {
    const int64_t h = g * a.group + i / nq, t = t0 + i % nq;
    const float inv = 1.f / colsum[i];
    const float* src = O + i * a.Hd;
    float* dst = out + (b * a.T + t) * a.os + h * a.Hd;
    for (int64_t d = 0; d < a.Hd; ++d) dst[d] = src[d] * inv;
    lse[(b * a.H + h) * a.T + t] = colmax[i] + std::log(colsum[i]);
  }
}

// ---- forward for generation: a few new tokens against a long KV cache -----
// Memory-bound: K and V must be streamed once, in address order. Tasks are
// (batch, chunk of keys) and cover every head; a chunk is walked in
// sub-blocks of 32 key rows, all KV heads of a sub-block before the next, so
// the rows are read in address order (the hardware prefetcher keeps up; one
// head's slice of every row at a time would touch a new page per row). Each task leaves a partial softmax (max, sum,
// unnormalised output) per column; a fixed-order merge finishes them.
// Columns: c = h·T + t.
constexpr int64_t kDecodeMaxTokens = 4;
constexpr int64_t kDecodeSub = 32;

// Blocking and scratch of decode_forward.
struct DecodeLayout {
  int64_t cols, ldc, gcols, keys, kc, nchunks, per_thread;
  int64_t partial_floats;  // pmax and psum [B, nchunks, cols] each
  int64_t fs_floats, is_ints;
};
DecodeLayout decode_layout(const Attn& a, int threads) {
  DecodeLayout d;
  d.cols = a.H * a.T;
  d.ldc = round_up(d.cols, 16);
  d.gcols = a.group * a.T;
  d.keys = int64_t(a.last_key(a.T - 1)) + 1;  // keys any column sees
  // A fixed chunk (not derived from the thread count, so neither is the result).
  d.kc = 256;
  while (d.kc > kDecodeSub && d.kc * d.ldc > (int64_t(1) << 18)) d.kc /= 2;  // ≤ 1 MiB of scores
  d.nchunks = ceil_div(d.keys, d.kc);
  d.partial_floats = a.B * d.nchunks * d.cols;
  d.per_thread = a.Hd * d.ldc + d.kc * d.ldc;
  d.fs_floats = int64_t(threads) * d.per_thread;
  d.is_ints = int64_t(threads) * 3 * d.ldc;
  return d;
}

void decode_forward(const Attn& a, const OpsKernels& Kn, const float* q, const float* k,
                    const float* v, float* out, float* lse) {
  const DecodeLayout d = decode_layout(a, num_threads());
  const int64_t T = a.T, cols = d.cols, ldc = d.ldc, gcols = d.gcols, keys = d.keys, kc = d.kc;
  const int64_t nchunks = d.nchunks, per_thread = d.per_thread;
  // Per (batch, chunk): column max (scaled), column sum, unnormalised output.
  Buffer<float> pmax(MemCategory::Workspace, size_t(d.partial_floats));
  Buffer<float> psum(MemCategory::Workspace, size_t(d.partial_floats));
  Buffer<float> pout(MemCategory::Workspace, size_t(d.partial_floats * a.Hd));
  Buffer<float> fs(MemCategory::Workspace, size_t(d.fs_floats));
  Buffer<int32_t> is(MemCategory::Workspace, size_t(d.is_ints));
  parallel_for(a.B * nchunks, 1, [&](int64_t i0, int64_t i1, int thread) {
    float* Qt = fs.data() + thread * per_thread;
    float* ST = Qt + a.Hd * ldc;
    QueryCols c(is.data() + thread * 3 * ldc, ldc);
    for (int64_t task = i0; task < i1; ++task) {
      const int64_t b = task / nchunks, ch = task % nchunks;
      const int64_t j0 = ch * kc, nk = std::min(kc, keys - j0);
      const float* Kb = k + b * a.kvbs;
      const float* Vb = v + b * a.kvbs;
      for (int64_t h = 0; h < a.H; ++h)
        pack_transposed(q + b * T * a.qs + h * a.Hd, a.qs, T, a.Hd, Qt + h * T, ldc);
      c.fill(a, nullptr, nullptr, b, 0, T, a.H);
      for (int64_t js = j0; js < j0 + nk; js += kDecodeSub) {
        const int64_t ns = std::min(kDecodeSub, j0 + nk - js);
        for (int64_t g = 0; g < a.KV; ++g)
          Kn.gemm(ns, gcols, a.Hd, Kb + js * a.kvs + g * a.Hd, a.kvs, 1, Qt + g * gcols, ldc,
                  ST + (js - j0) * ldc + g * gcols, ldc, false);
      }
      mask_scores(ST, ldc, nk, j0, cols, c, nullptr);
      float* mx = pmax.data() + task * cols;
      float* sm = psum.data() + task * cols;
      for (int64_t i = 0; i < cols; ++i) mx[i] = kNegInf, sm[i] = 0.f;
      for (int64_t j = 0; j < nk; ++j) Kn.max_cols(ST + j * ldc, mx, cols);
      for (int64_t i = 0; i < cols; ++i) mx[i] = mx[i] == kNegInf ? 0.f : mx[i] * a.scale;
      for (int64_t j = 0; j < nk; ++j) Kn.exp_cols(ST + j * ldc, mx, a.scale, cols, sm);
      float* O = pout.data() + task * cols * a.Hd;
      for (int64_t js = j0; js < j0 + nk; js += kDecodeSub) {
        const int64_t ns = std::min(kDecodeSub, j0 + nk - js);
        for (int64_t g = 0; g < a.KV; ++g)
          Kn.gemm(gcols, a.Hd, ns, ST + (js - j0) * ldc + g * gcols, 1, ldc,
                  Vb + js * a.kvs + g * a.Hd, a.kvs, O + g * gcols * a.Hd, a.Hd, js > j0);
      }
    }
  });
  // Merge the chunks of each (batch, column) in chunk order.
  parallel_for(a.B * cols, 16, [&](int64_t i0, int64_t i1, int) {
    for (int64_t bc = i0; bc < i1; ++bc) {
      const int64_t b = bc / cols, col = bc % cols, h = col / T, t = col % T;
      float M = kNegInf;
      for (int64_t ch = 0; ch < nchunks; ++ch) {
        const int64_t task = b * nchunks + ch;
        if (psum[task * cols + col] > 0.f) M = std::max(M, pmax[task * cols + col]);
      }
      float* dst = out + (b * T + t) * a.os + h * a.Hd;
      for (int64_t d = 0; d < a.Hd; ++d) dst[d] = 0.f;
      float total = 0.f;
      for (int64_t ch = 0; ch < nchunks; ++ch) {
        const int64_t task = b * nchunks + ch;
        const float l = psum[task * cols + col];
        if (!(l > 0.f)) continue;
        const float w = std::exp(pmax[task * cols + col] - M);
        total += w * l;
        const float* o = pout.data() + (task * cols + col) * a.Hd;
        for (int64_t d = 0; d < a.Hd; ++d) dst[d] += w * o[d];
      }
      const float inv = 1.f / total;
      for (int64_t d = 0; d < a.Hd; ++d) dst[d] *= inv;
      lse[(b * a.H + h) * T + t] = M + std::log(total);
    }
  });
}

// The query side of the backward, transposed once per call and shared by
// both passes: Qt, dOt [B, H, Hd, ldT].
struct QuerySideT {
  const float* Qt;
  const float* dOt;
  int64_t ldT;
  int64_t offset(const Attn& a, int64_t b, int64_t h) const { return (b * a.H + h) * a.Hd * ldT; }
};

// ---- backward pass A: dK, dV rows of one key block of one (batch, kv head) --
// Loops over the query heads of the group and over chunks of qc queries.
// Scratch: P, dS [bk, ld]; ints 3·ld (ld = round_up(qc,16)).
void backward_kv_block(const Attn& a, const OpsKernels& Kn, int64_t b, int64_t g, int64_t j0,
                       int64_t nk, int64_t qc, const float* q, const float* k, const float* v,
                       const int32_t* seg, const int32_t* seg_lo, const float* lse,
                       const float* Dv, const float* dout, const QuerySideT& qt, float* dk,
                       float* dv, float* fs, int32_t* is, int64_t bk_max) {
  const int64_t ldq = round_up(qc, 16);
  float* P = fs;
  float* dS = P + bk_max * ldq;
  QueryCols c(is, ldq);
  const int64_t j1 = j0 + nk - 1;
  const float* Kj = k + b * a.kvbs + j0 * a.kvs + g * a.Hd;
  const float* Vj = v + b * a.kvbs + j0 * a.kvs + g * a.Hd;
  float* dKj = dk + b * a.kvbs + j0 * a.kvs + g * a.Hd;
  float* dVj = dv + b * a.kvbs + j0 * a.kvs + g * a.Hd;
  for (int64_t j = 0; j < nk; ++j) {
    std::memset(dKj + j * a.kvs, 0, size_t(a.Hd) * sizeof(float));
    std::memset(dVj + j * a.kvs, 0, size_t(a.Hd) * sizeof(float));
  }
  const int32_t* segb = seg ? seg + b * a.T : nullptr;
  // Queries that can see a key of [j0, j1]: from the first whose causal
  // horizon reaches j0 to the last whose segment starts at or before j1.
  const int64_t tmin = std::min(a.T, std::max<int64_t>(0, j0 - a.q_off));
  int64_t tmax = a.T - 1;
  if (seg) {
    tmax = tmin - 1;
    for (int64_t t = tmin; t < a.T; ++t)
      if (seg_lo[b * a.T + t] <= j1) tmax = t;
  }
  for (int64_t hh = 0; hh < a.group; ++hh) {
    const int64_t h = g * a.group + hh;
    const float* lse_h = lse + (b * a.H + h) * a.T;
    const float* D_h = Dv + (b * a.H + h) * a.T;
    for (int64_t c0 = tmin; c0 <= tmax; c0 += qc) {
      const int64_t nc = std::min(qc, tmax + 1 - c0);
      c.fill(a, seg, seg_lo, b, c0, nc);
      if (c.min_lo > j1 || c.max_hi < j0) continue;
      const float* Qc = q + (b * a.T + c0) * a.qs + h * a.Hd;
      const float* dOc = dout + (b * a.T + c0) * a.os + h * a.Hd;
      const float* Qt = qt.Qt + qt.offset(a, b, h) + c0;
      const float* dOt = qt.dOt + qt.offset(a, b, h) + c0;
      Kn.gemm(nk, nc, a.Hd, Kj, a.kvs, 1, Qt, qt.ldT, P, ldq, false);
      mask_scores(P, ldq, nk, j0, nc, c, segb);
      Kn.gemm(nk, nc, a.Hd, Vj, a.kvs, 1, dOt, qt.ldT, dS, ldq, false);
      for (int64_t j = 0; j < nk; ++j)
        Kn.softmax_grad_cols(P + j * ldq, dS + j * ldq, lse_h + c0, D_h + c0, a.scale, nc);
      Kn.gemm(nk, a.Hd, nc, P, ldq, 1, dOc, a.os, dVj, a.kvs, true);
      Kn.gemm(nk, a.Hd, nc, dS, ldq, 1, Qc, a.qs, dKj, a.kvs, true);
    }
  }
  for (int64_t j = 0; j < nk; ++j) {
    float* r = dKj + j * a.kvs;
    for (int64_t d = 0; d < a.Hd; ++d) r[d] *= a.scale;
  }
}

// ---- backward pass B: dQ rows of one block of nq queries of one (b, head) ----
// Walks the visible keys in chunks of kc. Scratch: P, dS [kc, ld]; ints 3·ld.
void backward_q_block(const Attn& a, const OpsKernels& Kn, int64_t b, int64_t h, int64_t t0,
                      int64_t nq, int64_t kc, const float* k, const float* v, const int32_t* seg,
                      const int32_t* seg_lo, const float* lse, const float* Dv,
                      const QuerySideT& qt, float* dq, float* fs, int32_t* is, int64_t ld_max) {
  const int64_t g = h / a.group;
  const int64_t ld = round_up(nq, 16);
  float* P = fs;
  float* dS = P + kc * ld_max;
  QueryCols c(is, ld_max);
  c.fill(a, seg, seg_lo, b, t0, nq);
  const float* Qt = qt.Qt + qt.offset(a, b, h) + t0;
  const float* dOt = qt.dOt + qt.offset(a, b, h) + t0;
  float* dQb = dq + (b * a.T + t0) * a.qs + h * a.Hd;
  const float* lse_b = lse + (b * a.H + h) * a.T + t0;
  const float* D_b = Dv + (b * a.H + h) * a.T + t0;
  const int32_t* segb = seg ? seg + b * a.T : nullptr;
  bool first = true;
  for (int64_t c0 = c.min_lo; c0 <= c.max_hi; c0 += kc) {
    const int64_t nkc = std::min<int64_t>(kc, c.max_hi + 1 - c0);
    const float* Kc = k + b * a.kvbs + c0 * a.kvs + g * a.Hd;
    const float* Vc = v + b * a.kvbs + c0 * a.kvs + g * a.Hd;
    Kn.gemm(nkc, nq, a.Hd, Kc, a.kvs, 1, Qt, qt.ldT, P, ld, false);
    mask_scores(P, ld, nkc, c0, nq, c, segb);
    Kn.gemm(nkc, nq, a.Hd, Vc, a.kvs, 1, dOt, qt.ldT, dS, ld, false);
    for (int64_t j = 0; j < nkc; ++j)
      Kn.softmax_grad_cols(P + j * ld, dS + j * ld, lse_b, D_b, a.scale, nq);
    Kn.gemm(nq, a.Hd, nkc, dS, 1, ld, Kc, a.kvs, dQb, a.qs, !first);
    first = false;
  }
  for (int64_t i = 0; i < nq; ++i) {
    float* r = dQb + i * a.qs;
    if (first) std::memset(r, 0, size_t(a.Hd) * sizeof(float));
    for (int64_t d = 0; d < a.Hd; ++d) r[d] *= a.scale;
  }
}

}  // namespace

void attention_forward_reference(const AttentionShape& shape, const float* q, const float* k,
                                 const float* v, const int32_t* segments, float* out,
                                 float* lse) {
  const Attn a(shape);
  if (a.empty()) return;
  Buffer<float> p(MemCategory::Workspace, size_t(a.S));
  for (int64_t b = 0; b < a.B; ++b)
    for (int64_t h = 0; h < a.H; ++h) {
      const int64_t g = h / a.group;
      for (int64_t t = 0; t < a.T; ++t) {
        const float* qr = q + (b * a.T + t) * a.qs + h * a.Hd;
        float m = kNegInf;
        for (int64_t j = 0; j < a.S; ++j) {
          const bool vis = j <= a.q_off + t &&
                           (!segments || segments[b * a.T + j] == segments[b * a.T + t]);
          float s = kNegInf;
          if (vis) {
            const float* kr = k + b * a.kvbs + j * a.kvs + g * a.Hd;
            float d = 0.f;
            for (int64_t i = 0; i < a.Hd; ++i) d += qr[i] * kr[i];
            s = d * a.scale;
          }
          p[j] = s;
          m = std::max(m, s);
        }
        float sum = 0.f;
        for (int64_t j = 0; j < a.S; ++j) {
          p[j] = p[j] == kNegInf ? 0.f : std::exp(p[j] - m);
          sum += p[j];
        }
        float* o = out + (b * a.T + t) * a.os + h * a.Hd;
        for (int64_t i = 0; i < a.Hd; ++i) o[i] = 0.f;
        for (int64_t j = 0; j < a.S; ++j) {
          if (p[j] == 0.f) continue;
          const float w = p[j] / sum;
          const float* vr = v + b * a.kvbs + j * a.kvs + g * a.Hd;
          for (int64_t i = 0; i < a.Hd; ++i) o[i] += w * vr[i];
        }
        lse[(b * a.H + h) * a.T + t] = m + std::log(sum);
      }
    }
}

namespace {
// Blocking and per-thread scratch of attention_forward (prefill / training).
struct ForwardLayout {
  int64_t bq, nqb, ld_max, per_thread, fs_floats, is_ints;
};
ForwardLayout forward_layout(const Attn& a, int threads) {
  ForwardLayout f;
  // Tasks: (batch, kv head, block of bq queries), about 64 score columns each.
  f.bq = pick_block(std::max<int64_t>(8, 64 / a.group), a.T, a.B * a.KV, threads, 8);
  while (f.bq > 1 && a.group * f.bq * a.S > (int64_t(1) << 20)) f.bq /= 2;  // ≤ 4 MiB of scores
  f.nqb = ceil_div(a.T, f.bq);
  f.ld_max = round_up(a.group * f.bq, 16);
  f.per_thread = a.Hd * f.ld_max + a.S * f.ld_max + 2 * f.ld_max + f.ld_max * a.Hd;
  f.fs_floats = int64_t(threads) * f.per_thread;
  f.is_ints = int64_t(threads) * 3 * f.ld_max;
  return f;
}

// Blocking and scratch of attention_backward.
struct BackwardLayout {
  int64_t d_floats;              // Dv [B, H, T]
  int64_t ldT, qt_floats;        // Qᵀ and dOᵀ [B, H, Hd, ldT] each
  int64_t bk, nkb, qc, ldq;      // pass A
  int64_t bq, nqb, ldb, kc;      // pass B
  int64_t per_thread, iper, fs_floats, is_ints;
};
BackwardLayout backward_layout(const Attn& a, int threads) {
  BackwardLayout l;
  l.d_floats = a.B * a.H * a.T;
  // The padded row length keeps the rows of Qᵀ and dOᵀ off a power-of-two stride.
  l.ldT = round_up(a.T, 16) + 16;
  l.qt_floats = a.B * a.H * a.Hd * l.ldT;
  const int64_t kv_heads = a.B * a.KV, q_heads = a.B * a.H;
  l.bk = pick_block(64, a.S, kv_heads, threads);
  l.nkb = ceil_div(a.S, l.bk);
  l.qc = std::min<int64_t>(128, a.T);
  l.ldq = round_up(l.qc, 16);
  l.bq = pick_block(64, a.T, q_heads, threads);
  l.nqb = ceil_div(a.T, l.bq);
  l.ldb = round_up(l.bq, 16);
  l.kc = std::min<int64_t>(128, a.S);
  l.per_thread = std::max(2 * l.bk * l.ldq, 2 * l.kc * l.ldb);
  l.iper = 3 * std::max(l.ldq, l.ldb);
  l.fs_floats = int64_t(threads) * l.per_thread;
  l.is_ints = int64_t(threads) * l.iper;
  return l;
}

// Bytes of the segment tables: lo kept through the op, runs while it is built.
int64_t segment_bytes(const Attn& a, bool segments, int64_t* transient) {
  *transient = segments ? a.T * int64_t(sizeof(int64_t)) : 0;
  return segments ? a.B * a.T * int64_t(sizeof(int32_t)) : 0;
}
}  // namespace

int64_t attention_forward_workspace_bytes(const AttentionShape& shape, bool segments,
                                          int threads) {
  const Attn a(shape);
  if (a.empty()) return 0;
  if (!segments && a.T <= kDecodeMaxTokens) {
    const DecodeLayout d = decode_layout(a, threads);
    return (2 * d.partial_floats + d.partial_floats * a.Hd + d.fs_floats) * int64_t(sizeof(float)) +
           d.is_ints * int64_t(sizeof(int32_t));
  }
  int64_t runs = 0;
  const int64_t lo = segment_bytes(a, segments, &runs);
  const ForwardLayout f = forward_layout(a, threads);
  return lo + std::max(runs, f.fs_floats * int64_t(sizeof(float)) +
                                 f.is_ints * int64_t(sizeof(int32_t)));
}

int64_t attention_backward_workspace_bytes(const AttentionShape& shape, bool segments,
                                           int threads) {
  const Attn a(shape);
  if (a.empty()) return 0;
  int64_t runs = 0;
  const int64_t lo = segment_bytes(a, segments, &runs);
  const BackwardLayout l = backward_layout(a, threads);
  return lo + std::max(runs, (l.d_floats + 2 * l.qt_floats + l.fs_floats) * int64_t(sizeof(float)) +
                                 l.is_ints * int64_t(sizeof(int32_t)));
}

void attention_forward(const AttentionShape& shape, const float* q, const float* k,
                       const float* v, const int32_t* segments, float* out, float* lse) {
  const Attn a(shape);
  if (a.empty()) return;
  const OpsKernels& Kn = active_kernels();
  if (!segments && a.T <= kDecodeMaxTokens) return decode_forward(a, Kn, q, k, v, out, lse);
  Buffer<int32_t> seg_lo;
  if (segments) seg_lo = segment_first_keys(segments, a.B, a.T);
  const ForwardLayout f = forward_layout(a, num_threads());
  const int64_t bq = f.bq, nqb = f.nqb, ld_max = f.ld_max, per_thread = f.per_thread;
  Buffer<float> fs(MemCategory::Workspace, size_t(f.fs_floats));
  Buffer<int32_t> is(MemCategory::Workspace, size_t(f.is_ints));
  const int64_t groups = a.B * a.KV;
  // Largest (last) query blocks first, all kv heads of one block together.
  parallel_for(groups * nqb, 1, [&](int64_t i0, int64_t i1, int thread) {
    for (int64_t task = i0; task < i1; ++task) {
      const int64_t qb = nqb - 1 - task / groups, bg = task % groups;
      const int64_t t0 = qb * bq, nq = std::min(bq, a.T - t0);
      forward_block(a, Kn, bg / a.KV, bg % a.KV, t0, nq, q, k, v, segments, seg_lo.data(), out,
                    lse, fs.data() + thread * per_thread, is.data() + thread * 3 * ld_max,
                    ld_max);
    }
  });
}

void attention_backward_reference(const AttentionShape& shape, const float* q, const float* k,
                                  const float* v, const int32_t* segments, const float* out,
                                  const float* lse, const float* dout, float* dq, float* dk,
                                  float* dv) {
  const Attn a(shape);
  if (a.empty()) return;
  for (int64_t b = 0; b < a.B; ++b) {
    for (int64_t t = 0; t < a.T; ++t)
      std::memset(dq + (b * a.T + t) * a.qs, 0, size_t(a.H * a.Hd) * sizeof(float));
    for (int64_t j = 0; j < a.S; ++j) {
      std::memset(dk + b * a.kvbs + j * a.kvs, 0, size_t(a.KV * a.Hd) * sizeof(float));
      std::memset(dv + b * a.kvbs + j * a.kvs, 0, size_t(a.KV * a.Hd) * sizeof(float));
    }
  }
  Buffer<float> p(MemCategory::Workspace, size_t(a.S)), dp(MemCategory::Workspace, size_t(a.S));
  for (int64_t b = 0; b < a.B; ++b)
    for (int64_t h = 0; h < a.H; ++h) {
      const int64_t g = h / a.group;
      for (int64_t t = 0; t < a.T; ++t) {
        const float* qr = q + (b * a.T + t) * a.qs + h * a.Hd;
        const float* dor = dout + (b * a.T + t) * a.os + h * a.Hd;
        float* dqr = dq + (b * a.T + t) * a.qs + h * a.Hd;
        const float l = lse[(b * a.H + h) * a.T + t];
        float D = 0.f;
        for (int64_t j = 0; j < a.S; ++j) {
          p[j] = 0.f;
          dp[j] = 0.f;
          const bool vis = j <= a.q_off + t &&
                           (!segments || segments[b * a.T + j] == segments[b * a.T + t]);
          if (!vis) continue;
          const float* kr = k + b * a.kvbs + j * a.kvs + g * a.Hd;
          const float* vr = v + b * a.kvbs + j * a.kvs + g * a.Hd;
          float s = 0.f, d = 0.f;
          for (int64_t i = 0; i < a.Hd; ++i) s += qr[i] * kr[i], d += dor[i] * vr[i];
          p[j] = std::exp(s * a.scale - l);
          dp[j] = d;
          D += p[j] * d;
        }
        for (int64_t j = 0; j < a.S; ++j) {
          if (p[j] == 0.f) continue;
          const float ds = p[j] * (dp[j] - D) * a.scale;
          const float* kr = k + b * a.kvbs + j * a.kvs + g * a.Hd;
          float* dkr = dk + b * a.kvbs + j * a.kvs + g * a.Hd;
          float* dvr = dv + b * a.kvbs + j * a.kvs + g * a.Hd;
          for (int64_t i = 0; i < a.Hd; ++i) {
            dqr[i] += ds * kr[i];
            dkr[i] += ds * qr[i];
            dvr[i] += p[j] * dor[i];
          }
        }
      }
    }
}

void attention_backward(const AttentionShape& shape, const float* q, const float* k,
                        const float* v, const int32_t* segments, const float* out,
                        const float* lse, const float* dout, float* dq, float* dk, float* dv) {
  const Attn a(shape);
  if (a.empty()) return;
  const OpsKernels& Kn = active_kernels();
  Buffer<int32_t> seg_lo;
  if (segments) seg_lo = segment_first_keys(segments, a.B, a.T);

  const int threads = num_threads();
  const BackwardLayout l = backward_layout(a, threads);
  // D[b,h,t] = dO·O (= Σ_j P·dP), the softmax-backward row term.
  Buffer<float> Dv(MemCategory::Workspace, size_t(l.d_floats));
  parallel_for(a.B * a.T, 64, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / a.T, t = r % a.T;
      for (int64_t h = 0; h < a.H; ++h)
        Dv[(b * a.H + h) * a.T + t] =
            Kn.dot(dout + r * a.os + h * a.Hd, out + r * a.os + h * a.Hd, a.Hd);
    }
  });

  // Qᵀ and dOᵀ per head.
  const int64_t ldT = l.ldT;
  Buffer<float> Qt(MemCategory::Workspace, size_t(l.qt_floats));
  Buffer<float> dOt(MemCategory::Workspace, size_t(l.qt_floats));
  const QuerySideT qt{Qt.data(), dOt.data(), ldT};
  parallel_for(a.B * a.H, 1, [&](int64_t i0, int64_t i1, int) {
    for (int64_t bh = i0; bh < i1; ++bh) {
      const int64_t b = bh / a.H, h = bh % a.H;
      pack_transposed(q + b * a.T * a.qs + h * a.Hd, a.qs, a.T, a.Hd,
                      Qt.data() + qt.offset(a, b, h), ldT);
      pack_transposed(dout + b * a.T * a.os + h * a.Hd, a.os, a.T, a.Hd,
                      dOt.data() + qt.offset(a, b, h), ldT);
    }
  });

  const int64_t kv_heads = a.B * a.KV, q_heads = a.B * a.H;
  // Pass A (dK, dV): tasks own key blocks, so no two write the same rows.
  const int64_t bk = l.bk, nkb = l.nkb, qc = l.qc;
  // Pass B (dQ): tasks own query blocks.
  const int64_t bq = l.bq, nqb = l.nqb, ldb = l.ldb, kc = l.kc;
  const int64_t per_thread = l.per_thread, iper = l.iper;
  Buffer<float> fs(MemCategory::Workspace, size_t(l.fs_floats));
  Buffer<int32_t> is(MemCategory::Workspace, size_t(l.is_ints));

  // Head-major, so a thread's consecutive tasks reuse one head's Qᵀ/dOᵀ in
  // cache; within a head the first key blocks (seen by the most queries) first.
  parallel_for(kv_heads * nkb, 1, [&](int64_t i0, int64_t i1, int thread) {
    for (int64_t task = i0; task < i1; ++task) {
      const int64_t bg = task / nkb, kb = task % nkb;
      const int64_t j0 = kb * bk, nk = std::min(bk, a.S - j0);
      backward_kv_block(a, Kn, bg / a.KV, bg % a.KV, j0, nk, qc, q, k, v, segments,
                        seg_lo.data(), lse, Dv.data(), dout, qt, dk, dv,
                        fs.data() + thread * per_thread, is.data() + thread * iper, bk);
    }
  });
  // Head-major (one head's K/V stay in cache); within a head the last query
  // blocks (which see the most keys) first.
  parallel_for(q_heads * nqb, 1, [&](int64_t i0, int64_t i1, int thread) {
    for (int64_t task = i0; task < i1; ++task) {
      const int64_t bh = task / nqb, qb = nqb - 1 - task % nqb;
      const int64_t t0 = qb * bq, nq = std::min(bq, a.T - t0);
      backward_q_block(a, Kn, bh / a.H, bh % a.H, t0, nq, kc, k, v, segments, seg_lo.data(),
                       lse, Dv.data(), qt, dq, fs.data() + thread * per_thread,
                       is.data() + thread * iper, ldb);
    }
  });
}

// ============================================================================
// SwiGLU
// ============================================================================

void swiglu_forward_reference(const float* g, const float* u, int64_t n, float* a) {
  for (int64_t i = 0; i < n; ++i) a[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
}

void swiglu_backward_reference(const float* g, const float* u, const float* da, int64_t n,
                               float* dg, float* du) {
  for (int64_t i = 0; i < n; ++i) {
    const float sig = 1.f / (1.f + std::exp(-g[i]));
    const float silu = g[i] * sig;
    dg[i] = da[i] * u[i] * (sig * (1.f + g[i] * (1.f - sig)));
    du[i] = da[i] * silu;
  }
}

void swiglu_forward(const float* g, const float* u, int64_t n, float* a) {
  const OpsKernels& K = active_kernels();
  parallel_for(n, 16384, [&](int64_t i0, int64_t i1, int) {
    K.swiglu_forward(g + i0, u + i0, i1 - i0, a + i0);
  });
}

void swiglu_backward(const float* g, const float* u, const float* da, int64_t n, float* dg,
                     float* du) {
  const OpsKernels& K = active_kernels();
  parallel_for(n, 16384, [&](int64_t i0, int64_t i1, int) {
    K.swiglu_backward(g + i0, u + i0, da + i0, i1 - i0, dg + i0, du + i0);
  });
}

// ============================================================================
// Cross-entropy
// ============================================================================
// A target outside [0, vocab) (the convention is -100) marks an ignored row.

double cross_entropy_reference(float* logits, const int32_t* targets, int64_t rows,
                               int64_t vocab, float grad_scale, bool want_grad) {
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    float* x = logits + r * vocab;
    const int32_t t = targets[r];
    if (t < 0 || t >= vocab) {
      if (want_grad) std::memset(x, 0, size_t(vocab) * sizeof(float));
      continue;
    }
    float m = kNegInf;
    for (int64_t j = 0; j < vocab; ++j) m = std::max(m, x[j]);
    double sum = 0;
    for (int64_t j = 0; j < vocab; ++j) sum += std::exp(double(x[j]) - double(m));
    const double lse = double(m) + std::log(sum);
    total += lse - double(x[t]);
    if (want_grad) {
      for (int64_t j = 0; j < vocab; ++j)
        x[j] = float(double(grad_scale) * (std::exp(double(x[j]) - lse) - (j == t ? 1.0 : 0.0)));
    }
  }
  return total;
}

double cross_entropy(float* logits, const int32_t* targets, int64_t rows, int64_t vocab,
                     float grad_scale, bool want_grad) {
  if (rows <= 0) return 0;
  const OpsKernels& K = active_kernels();
  Buffer<double> row_loss(MemCategory::Workspace, size_t(rows));  // cross_entropy_workspace_bytes
  parallel_for(rows, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, vocab)),
               [&](int64_t r0, int64_t r1, int) {
                 for (int64_t r = r0; r < r1; ++r) {
                   float* x = logits + r * vocab;
                   const int32_t t = targets[r];
                   row_loss[r] = 0;
                   if (t < 0 || t >= vocab) {
                     if (want_grad) std::memset(x, 0, size_t(vocab) * sizeof(float));
                     continue;
                   }
                   const float m = K.max(x, vocab);
                   const float xt = x[t];
                   const double sum = K.exp_sum(x, 1.f, m, want_grad ? x : nullptr, vocab);
                   row_loss[r] = double(m) + std::log(sum) - double(xt);
                   if (want_grad) {
                     const float f = float(double(grad_scale) / sum);
                     for (int64_t j = 0; j < vocab; ++j) x[j] *= f;
                     x[t] -= grad_scale;
                   }
                 }
               });
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) total += row_loss[r];
  return total;
}

int64_t cross_entropy_workspace_bytes(int64_t rows) {
  return rows > 0 ? rows * int64_t(sizeof(double)) : 0;
}

// ============================================================================
// Embedding
// ============================================================================

void embedding_forward(DType table_dtype, const void* table, int64_t dim, const int32_t* ids,
                       int64_t rows, float* out) {
  if (table_dtype != DType::F32 && table_dtype != DType::BF16 && table_dtype != DType::F16)
    throw std::invalid_argument("embedding_forward: the table must be F32, BF16 or F16");
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, dim)),
               [&](int64_t r0, int64_t r1, int) {
                 for (int64_t r = r0; r < r1; ++r) {
                   float* o = out + r * dim;
                   const int64_t row = ids[r];
                   if (table_dtype == DType::F32) {
                     std::memcpy(o, static_cast<const float*>(table) + row * dim,
                                 size_t(dim) * sizeof(float));
                   } else if (table_dtype == DType::BF16) {
                     const uint16_t* src = static_cast<const uint16_t*>(table) + row * dim;
                     for (int64_t i = 0; i < dim; ++i) {
                       const uint32_t bits = uint32_t(src[i]) << 16;
                       std::memcpy(o + i, &bits, 4);
                     }
                   } else {
                     const uint16_t* src = static_cast<const uint16_t*>(table) + row * dim;
                     for (int64_t i = 0; i < dim; ++i) o[i] = f16_to_f32(src[i]);
                   }
                 }
               });
}

// ============================================================================
// AdamW and gradient norm
// ============================================================================

void adamw_step_reference(float* p, const float* g, float* m, float* v, int64_t n,
                          const AdamWParams& a) {
  const ops_detail::AdamWScalars s = ops_detail::adamw_scalars(a);
  for (int64_t i = 0; i < n; ++i) ops_detail::adamw_element(p[i], g[i], m[i], v[i], s);
}

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamWParams& a) {
  const ops_detail::AdamWScalars s = ops_detail::adamw_scalars(a);
  const OpsKernels& K = active_kernels();
  parallel_for(n, 16384, [&](int64_t i0, int64_t i1, int) {
    K.adamw(p + i0, g + i0, m + i0, v + i0, i1 - i0, s);
  });
}

namespace {
constexpr int64_t kSumSquaresChunk = 65536;  // floats per partial sum
}  // namespace

int64_t sum_squares_workspace_bytes(int64_t n) {
  const int64_t chunks = n > 0 ? ceil_div(n, kSumSquaresChunk) : 0;
  return chunks > 1 ? chunks * int64_t(sizeof(double)) : 0;
}

double sum_squares(const float* x, int64_t n) {
  if (n <= 0) return 0;
  const OpsKernels& K = active_kernels();
  // Fixed chunks summed in order: the result does not depend on the threads.
  const int64_t chunk = kSumSquaresChunk, chunks = ceil_div(n, chunk);
  if (chunks == 1) return K.dot_f64(x, x, n);
  Buffer<double> part(MemCategory::Workspace, size_t(chunks));  // sum_squares_workspace_bytes
  parallel_for(chunks, 1, [&](int64_t c0, int64_t c1, int) {
    for (int64_t c = c0; c < c1; ++c) {
      const float* xc = x + c * chunk;
      const int64_t len = std::min(chunk, n - c * chunk);
      part[c] = K.dot_f64(xc, xc, len);
    }
  });
  double total = 0;
  for (int64_t c = 0; c < chunks; ++c) total += part[c];
  return total;
}

}  // namespace ls
