// Per-instruction-set inner kernels behind ops.cpp. ops.cpp owns the
// threading, blocking and masking; the few loops that decide the speed (small
// strided GEMM tiles, vector exp, reductions, elementwise SwiGLU / AdamW) are
// compiled once per ISA (ops.cpp portable, ops_avx2.cpp, ops_avx512.cpp) and
// reached through one table chosen by active_isa().
#pragma once
#include <cstdint>

namespace ls {
namespace ops_detail {

// AdamW scalars prepared in double as torch does with Python floats, then
// rounded to fp32 the way torch's CPU kernels use a scalar on a float tensor.
struct AdamWScalars {
  float grad_scale;     // g' = g * grad_scale
  float decay;          // 1 - lr*wd
  float lerp_weight;    // 1 - beta1 (exp_avg.lerp_(g', 1 - beta1))
  bool lerp_small;      // |lerp_weight| < 0.5 picks torch's lerp formula
  float beta2;          // exp_avg_sq.mul_(beta2)
  float one_minus_beta2;
  float bc2_sqrt;       // sqrt(1 - beta2^step)
  float eps;
  float neg_step_size;  // -lr / (1 - beta1^step)
};

struct OpsKernels {
  const char* name;
  // C[M,N] (+)= Σ_k A(m,k) · B[k*ldb + n] with A(m,k) = A[m*sam + k*sak];
  // exactly one of sam, sak is 1 (A row-major or column-major). B rows and C
  // rows are contiguous in n. accumulate=false overwrites C (ignores NaNs in it).
  void (*gemm)(int64_t M, int64_t N, int64_t K, const float* A, int64_t sam, int64_t sak,
               const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate);
  float (*dot)(const float* a, const float* b, int64_t n);                  // fp32 lanes
  double (*dot_f64)(const float* a, const float* b, int64_t n);             // products in double
  double (*dot3_f64)(const float* a, const float* b, const float* c, int64_t n);  // Σ a·b·c
  float (*max)(const float* x, int64_t n);                                  // -inf for n == 0
  // y[i] = exp(x[i]·scale - shift) (y may be null or alias x); returns Σ exp (double).
  double (*exp_sum)(const float* x, float scale, float shift, float* y, int64_t n);
  // Softmax over keys, one row of a transposed score tile (key j, queries i):
  //   max_cols:  colmax[i] = max(colmax[i], x[i])
  //   exp_cols:  x[i] = exp(x[i]·scale - shift[i]); colsum[i] += x[i] if colsum
  //   softmax_grad_cols: s[i] = P = exp(s[i]·scale - lse[i]); dp[i] = P·(dp[i] - D[i])
  void (*max_cols)(const float* x, float* colmax, int64_t n);
  void (*exp_cols)(float* x, const float* shift, float scale, int64_t n, float* colsum);
  void (*softmax_grad_cols)(float* s, float* dp, const float* lse, const float* D, float scale,
                            int64_t n);
  void (*swiglu_forward)(const float* g, const float* u, int64_t n, float* a);
  void (*swiglu_backward)(const float* g, const float* u, const float* da, int64_t n, float* dg,
                          float* du);
  void (*adamw)(float* p, const float* g, float* m, float* v, int64_t n, const AdamWScalars& s);
};

const OpsKernels& kernels_portable();
#if defined(LS_HAVE_X86_KERNELS)
const OpsKernels& kernels_avx2();
const OpsKernels& kernels_avx512();
#endif
// The table for active_isa() (cheap; read on every call so tests can switch).
const OpsKernels& active_kernels();

}  // namespace ops_detail
}  // namespace ls
