// Micro-benchmarks of the kernels, for `npm run bench`.
#pragma once
#include <cstdint>

#include "common/dtype.h"

namespace ls {

// Seconds per call of linear_forward (Y[T,out] = X[T,in]·Wᵀ) with W held as
// `dtype` (F32, BF16 or NF4), averaged over `iterations` after one warm-up.
double bench_linear_forward(int64_t tokens, int64_t out, int64_t in, DType dtype, int iterations);

}  // namespace ls
