// Declarations shared by gemm.cpp (driver, portable kernels), the per-ISA
// kernel files gemm_avx2.cpp / gemm_avx512.cpp, and nf4.cpp. Not a public
// header: the engine calls only gemm.h and nf4.h.
//
// Operands the micro-kernels read:
//   A        unpacked, read in place: op(A)(i, k) = a[i*lda + k] (k-contiguous)
//            or a[k*lda + i]; only rows < `rows` and k < kc are touched
//   B panel  [kc][NR]  b[k*NR + j] = op(B)[k0+k, j0+j], columns past N are zero
// A micro-kernel multiplies up to MR rows of A by one B panel into an MR x NR
// tile of C held in registers, and writes only its rows x cols corner.
#pragma once
#include <cstdint>

#include "../common/cpu.h"
#include "nf4.h"

namespace ls {

// First-level absmax of NF4 block `block`, recovered from its double-quantized
// form exactly as bitsandbytes does (see nf4.cpp).
float nf4_block_absmax(const Nf4Tensor& t, int64_t block);

namespace gemm {

struct IsaKernels {
  Isa isa;
  int mr, nr;  // micro-tile rows (A panel width) and columns (B panel width)

  // c[i*ldc + j] = alpha * sum_k A(i, k) * b[k*nr + j] + beta * c[i*ldc + j]
  // for i < rows (1..mr), j < cols (1..nr), where A(i, k) = a[i*lda + k] if
  // a_kcontig, else a[k*lda + i]; beta == 0 overwrites c without reading it.
  void (*micro)(int64_t kc, const float* a, int64_t lda, bool a_kcontig, const float* b, float* c,
                int64_t ldc, float alpha, float beta, int rows, int cols);

  // dst[k*width + r] = src[r*lds + k] for r < rows, k < kc; dst[k*width + r] = 0
  // for rows <= r < width. width <= 2*nr (B panels use width nr).
  void (*transpose_panel)(const float* src, int64_t lds, int rows, int64_t kc, int width,
                          float* dst);

  // transpose_panel of a bf16 source, each value widened to fp32 exactly.
  void (*transpose_panel_bf16)(const uint16_t* src, int64_t lds, int rows, int64_t kc, int width,
                               float* dst);

  // B panels from a bf16 source whose rows run along N: for k < kc, j < nlen,
  // dst[(j/nr)*kc*nr + k*nr + j%nr] = src[k*lds + j] widened to fp32; columns
  // of the last panel past nlen are zero.
  void (*bf16_rows_to_panels)(const uint16_t* src, int64_t lds, int64_t kc, int64_t nlen,
                              float* dst);

  // dst[i] = bf16 src[i] widened to fp32.
  void (*bf16_to_f32)(const uint16_t* src, int64_t n, float* dst);

  // Whole NF4 blocks -> fp32: block b (32 bytes at src + 32b) decodes to
  // dst[64b + 2i] = kNf4Code[byte_i >> 4] * absmax[b] and
  // dst[64b + 2i + 1] = kNf4Code[byte_i & 15] * absmax[b].
  void (*nf4_blocks_to_f32)(const uint8_t* src, int64_t blocks, const float* absmax, float* dst);

  // y[t*ldy] = sum_k x[t*ldx + k] * w[k] (+ y[t*ldy] if accumulate), t < rows.
  void (*dot_rows)(const float* x, int64_t ldx, int64_t rows, const float* w, int64_t k,
                   float* y, int64_t ldy, bool accumulate);

  // y[i] += sum_r a[r] * x[r*ldx + i], i < n, r < rows (rows <= 4).
  void (*axpy_rows)(int64_t n, const float* a, int rows, const float* x, int64_t ldx, float* y);

  // Register-only FMA loop on the calling thread until `seconds` have passed;
  // returns the flops done (2 per FMA lane).
  double (*peak_loop)(double seconds);
};

const IsaKernels& portable_kernels();
#if defined(LS_HAVE_X86_KERNELS)
const IsaKernels& avx2_kernels();
const IsaKernels& avx512_kernels();
#endif

}  // namespace gemm
}  // namespace ls
