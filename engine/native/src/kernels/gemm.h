// Matrix products. All activations are fp32, row-major. Frozen weights may be
// held as fp32, bf16 or NF4; the bf16/NF4 paths dequantize small tiles of the
// weight into per-thread scratch inside the GEMM (a whole dequantized weight
// never exists). Each entry point dispatches on active_isa() (see cpu.h) and
// is multithreaded with parallel_for. The *_reference functions are the plain
// scalar specification the optimized paths are tested against.
#pragma once
#include <cstdint>

#include "../common/dtype.h"
#include "nf4.h"

namespace ls {

// A frozen weight W [out, in] in one of the storage types.
struct WeightRef {
  DType dtype = DType::F32;  // F32, BF16 or NF4 (F16 is converted at load)
  int64_t out = 0, in = 0;
  const float* f32 = nullptr;      // dtype == F32: [out, in]
  const uint16_t* bf16 = nullptr;  // dtype == BF16: [out, in]
  Nf4Tensor nf4;                   // dtype == NF4
};

// C[M,N] = alpha * op(A) * op(B) + beta * C, fp32. op(A) is [M,K]: A is
// [M,K] (lda >= K) or, if transA, [K,M] (lda >= M); likewise op(B) is [K,N]:
// B is [K,N] (ldb >= N) or, if transB, [N,K] (ldb >= K). beta == 0 ignores
// the old contents of C (NaNs included).
void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
           float* C, int64_t ldc);
void sgemm_reference(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                     float* C, int64_t ldc);

// Forward through a frozen linear layer: Y[T,out] = X[T,in] · Wᵀ (+ Y if accumulate).
void linear_forward(const WeightRef& W, const float* X, int64_t T, float* Y, bool accumulate);
void linear_forward_reference(const WeightRef& W, const float* X, int64_t T, float* Y,
                              bool accumulate);

// Backward to the input: dX[T,in] = dY[T,out] · W (+ dX if accumulate).
void linear_backward_input(const WeightRef& W, const float* dY, int64_t T, float* dX,
                           bool accumulate);
void linear_backward_input_reference(const WeightRef& W, const float* dY, int64_t T, float* dX,
                                     bool accumulate);

// ---- scratch ------------------------------------------------------------------
// The products pack operand tiles into scratch counted as Workspace. It belongs
// to the thread that calls sgemm / linear_*: one set of per-thread buffers for
// each pool thread index (a, b, tile), which grow to the largest product the
// thread has run, and one shared packed A. gemm_release_scratch() frees the
// calling thread's scratch; the model calls it when each of its calls ends,
// so a call's scratch is counted during that call only.
void gemm_release_scratch();

// Floats of scratch one product needs: a, b and tile in each of `threads`
// thread slots (the most the product can put to work), shared_a once. The
// memory plan sizes the workspace with these; the products grow their
// buffers to exactly these sizes.
struct GemmScratch {
  int64_t a = 0, b = 0, tile = 0;  // per thread slot
  int threads = 0;                 // thread slots 0..threads-1 that may grow
  int64_t shared_a = 0;            // once (the calling thread's)
};
GemmScratch sgemm_scratch(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                          int threads);
GemmScratch linear_forward_scratch(DType dtype, int64_t out, int64_t in, int64_t T, int threads);
GemmScratch linear_backward_input_scratch(DType dtype, int64_t out, int64_t in, int64_t T,
                                          int threads);

// Dequantize rows [row_begin, row_end) of W into out[(row_end-row_begin), in] fp32.
void weight_rows_to_f32(const WeightRef& W, int64_t row_begin, int64_t row_end, float* out);

// Peak fp32 FMA throughput of this machine as measured by a register-only
// micro-benchmark on all threads (FLOP/s, 2 per FMA), for reporting GEMM
// efficiency.
double measure_peak_flops(double seconds);

}  // namespace ls
