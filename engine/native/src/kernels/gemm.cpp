// Matrix products: the blocked, packed, multithreaded GEMM driver, the
// portable kernels (the only ones on non-x86 CPUs and the LORA_STUDIO_ISA=scalar
// path), the scalar references, and the dispatch on active_isa().
//
// Dimension legend:
//   M, N, K   C[M,N] = op(A)[M,K] · op(B)[K,N]
//   T         tokens (rows of X / dY);  in, out  a weight W [out, in]
//   MR, NR    micro-tile (per ISA: AVX-512 14x32, AVX2 6x16, portable 4x16)
//   MC, KC    rows of A run against one B panel (~L2), B micro-panel [KC, NR] (~L1)
//   NC        columns of one work item (its packed B block [KC, NC])
//
// The blocked algorithm (GotoBLAS / BLIS):
//   op(A) is packed once per GEMM into MR-wide panels per KC slice, the panels
//     split over the threads, and shared by every work item (in chunks of K
//     that bound the copy). A is read in place instead when it is already
//     panel-shaped (transposed) or feeds only one or two column panels.
//   work items = a grid of column ranges of C (rows are split only when
//     there are too few columns), spread over the threads with parallel_for.
//     Each item, for each KC slice of K:
//       pack B[k0:k0+kc, n-range] into NR-wide panels (weights are dequantized
//         straight into them: a whole fp32 copy of W never exists)
//       for each MC block of rows, for each B panel, for each MR-row tile:
//         micro-kernel -> up to MR x NR of C (edge variants, no scratch tile).
//   The first KC slice applies beta (beta == 0 overwrites C), later ones add.
// sgemm with few rows and many columns computes Cᵀ = op(B)ᵀ·op(A)ᵀ, so the
// large operand is read in place and only the small one is packed.
// Linear layers with few tokens (generation) skip packing: each weight row is
// dequantized once and dotted with every token row (forward), or added into
// per-thread column chunks of dX (backward); both stream W once.
//
// Scratch (Workspace): per pool thread index a B block [KC, NC], an NF4 tile
// and the skinny paths' buffers, plus one shared packed A; all belong to the
// thread that started the product, grow to the largest product it runs, and
// live until gemm_release_scratch(). Their sizes come from plan_blocking and
// the *_scratch functions, which the memory plan reads too.
#include "gemm.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

#include "../common/cpu.h"
#include "../common/memory.h"
#include "../common/threads.h"
#include "gemm_internal.h"

namespace ls {
namespace gemm {
namespace {

// ============================================================================
// Portable kernels
// ============================================================================

constexpr int kPortableMR = 4, kPortableNR = 16;

void micro_portable(int64_t kc, const float* a, int64_t lda, bool a_kcontig, const float* b,
                    float* c, int64_t ldc, float alpha, float beta, int rows, int cols) {
  const int64_t rs = a_kcontig ? lda : 1, ks = a_kcontig ? 1 : lda;
  float acc[kPortableMR][kPortableNR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const float* bk = b + k * kPortableNR;
    for (int i = 0; i < rows; ++i) {
      const float ai = a[i * rs + k * ks];
      for (int j = 0; j < kPortableNR; ++j) acc[i][j] += ai * bk[j];
    }
  }
  for (int i = 0; i < rows; ++i) {
    float* ci = c + i * ldc;
    if (beta == 0.0f) {
      for (int j = 0; j < cols; ++j) ci[j] = alpha * acc[i][j];
    } else {
      for (int j = 0; j < cols; ++j) ci[j] = alpha * acc[i][j] + beta * ci[j];
    }
  }
}

void transpose_panel_portable(const float* src, int64_t lds, int rows, int64_t kc, int width,
                              float* dst) {
  constexpr int64_t kStep = 16;  // k-columns per pass, so dst stays in cache
  for (int64_t k0 = 0; k0 < kc; k0 += kStep) {
    const int64_t k1 = std::min(kc, k0 + kStep);
    for (int r = 0; r < rows; ++r) {
      const float* s = src + r * lds;
      for (int64_t k = k0; k < k1; ++k) dst[k * width + r] = s[k];
    }
    for (int64_t k = k0; k < k1; ++k)
      for (int r = rows; r < width; ++r) dst[k * width + r] = 0.0f;
  }
}

void transpose_panel_bf16_portable(const uint16_t* src, int64_t lds, int rows, int64_t kc,
                                   int width, float* dst) {
  constexpr int64_t kStep = 16;
  for (int64_t k0 = 0; k0 < kc; k0 += kStep) {
    const int64_t k1 = std::min(kc, k0 + kStep);
    for (int r = 0; r < rows; ++r) {
      const uint16_t* s = src + r * lds;
      for (int64_t k = k0; k < k1; ++k) dst[k * width + r] = bf16_to_f32(s[k]);
    }
    for (int64_t k = k0; k < k1; ++k)
      for (int r = rows; r < width; ++r) dst[k * width + r] = 0.0f;
  }
}

void bf16_rows_to_panels_portable(const uint16_t* src, int64_t lds, int64_t kc, int64_t nlen,
                                  float* dst) {
  constexpr int nr = kPortableNR;
  for (int64_t k = 0; k < kc; ++k)
    for (int64_t q = 0; q * nr < nlen; ++q) {
      float* d = dst + q * kc * nr + k * nr;
      const int64_t cols = std::min<int64_t>(nr, nlen - q * nr);
      for (int64_t j = 0; j < cols; ++j) d[j] = bf16_to_f32(src[k * lds + q * nr + j]);
      for (int64_t j = cols; j < nr; ++j) d[j] = 0.0f;
    }
}

void bf16_to_f32_portable(const uint16_t* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
}

void nf4_blocks_to_f32_portable(const uint8_t* src, int64_t blocks, const float* absmax,
                                float* dst) {
  for (int64_t b = 0; b < blocks; ++b) {
    const float a = absmax[b];
    for (int i = 0; i < kNf4BlockSize / 2; ++i) {
      const uint8_t byte = src[b * (kNf4BlockSize / 2) + i];
      dst[b * kNf4BlockSize + 2 * i] = kNf4Code[byte >> 4] * a;
      dst[b * kNf4BlockSize + 2 * i + 1] = kNf4Code[byte & 15] * a;
    }
  }
}

void dot_rows_portable(const float* x, int64_t ldx, int64_t rows, const float* w, int64_t k,
                       float* y, int64_t ldy, bool accumulate) {
  for (int64_t t = 0; t < rows; ++t) {
    const float* xt = x + t * ldx;
    float part[8] = {};
    int64_t i = 0;
    for (; i + 8 <= k; i += 8)
      for (int j = 0; j < 8; ++j) part[j] += xt[i + j] * w[i + j];
    float sum = 0.0f;
    for (; i < k; ++i) sum += xt[i] * w[i];
    for (int j = 0; j < 8; ++j) sum += part[j];
    y[t * ldy] = accumulate ? y[t * ldy] + sum : sum;
  }
}

void axpy_rows_portable(int64_t n, const float* a, int rows, const float* x, int64_t ldx,
                        float* y) {
  for (int r = 0; r < rows; ++r) {
    const float ar = a[r];
    const float* xr = x + r * ldx;
    for (int64_t i = 0; i < n; ++i) y[i] += ar * xr[i];
  }
}

double peak_loop_portable(double seconds) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  constexpr int kLanes = 32, kInner = 4096;
  float acc[kLanes];
  for (int j = 0; j < kLanes; ++j) acc[j] = float(j) * 1e-3f;
  volatile float mul_in = 0.999999f, add_in = 1e-6f;
  const float mul = mul_in, add = add_in;
  int64_t rounds = 0;
  do {
    for (int r = 0; r < kInner; ++r)
      for (int j = 0; j < kLanes; ++j) acc[j] = acc[j] * mul + add;
    ++rounds;
  } while (Clock::now() < deadline);
  float sink = 0.0f;
  for (int j = 0; j < kLanes; ++j) sink += acc[j];
  volatile float keep = sink;
  (void)keep;
  return double(rounds) * kInner * kLanes * 2.0;
}

// ============================================================================
// Blocking, workspace, operand packing
// ============================================================================

constexpr int64_t kKC = 256;          // packed depth: a B micro-panel is KC x NR
constexpr int64_t kMCTarget = 320;    // rows of a packed A block (rounded to MR)
constexpr int64_t kNCMax = 1024;      // columns of one work item
constexpr int64_t kPackedA = int64_t(1) << 20;  // floats of shared packed A per K chunk
constexpr int64_t kSkinnyTokens = 8;  // linear layers with T <= this skip packing
constexpr int64_t kSkinnyColumns = 512;  // dX columns per backward work item

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Scratch of one pool thread index: B block KC x NC (b), NF4 dequantization
// tile or skinny weight rows (tile), skinny backward accumulator (a).
struct ThreadScratch {
  Buffer<float> a, b, tile;
};

// Everything the products started by one thread use: a ThreadScratch per
// pool thread index (inside a parallel region, thread index i uses slot i),
// and shared_a, the packed A of the current product, read by every thread of
// it. Only the owning thread resizes or frees it, outside parallel regions.
struct CallerScratch {
  std::vector<ThreadScratch> slots;
  Buffer<float> shared_a;
};
thread_local CallerScratch t_caller;

CallerScratch& caller_scratch() {
  const size_t threads = size_t(num_threads());
  if (t_caller.slots.size() < threads) t_caller.slots.resize(threads);
  return t_caller;
}

float* grow(Buffer<float>& buf, int64_t count) {
  if (int64_t(buf.size()) < count) {
    buf.reset();
    buf = Buffer<float>(MemCategory::Workspace, size_t(count));
  }
  return buf.data();
}

// fp32 values of the weight's flat elements [flat, flat + count) (row-major
// over [out, in]); NF4 blocks are dequantized as nf4_dequantize does.
void weight_range_to_f32(const IsaKernels& ik, const WeightRef& W, int64_t flat, int64_t count,
                         float* dst) {
  switch (W.dtype) {
    case DType::BF16:
      ik.bf16_to_f32(W.bf16 + flat, count, dst);
      return;
    case DType::NF4: {
      const Nf4Tensor& t = W.nf4;
      int64_t i = flat;
      const int64_t end = flat + count;
      while (i < end) {
        const int64_t block = i / kNf4BlockSize;
        if (i % kNf4BlockSize == 0 && end - i >= kNf4BlockSize) {
          // A run of whole blocks: recover their absmax, then decode in one call.
          constexpr int64_t kRun = 64;
          const int64_t run = std::min(kRun, (end - i) / kNf4BlockSize);
          float absmax[kRun];
          for (int64_t b = 0; b < run; ++b) absmax[b] = nf4_block_absmax(t, block + b);
          ik.nf4_blocks_to_f32(t.packed + i / 2, run, absmax, dst);
          dst += run * kNf4BlockSize;
          i += run * kNf4BlockSize;
          continue;
        }
        const int64_t block_end = std::min(end, (block + 1) * kNf4BlockSize);
        const float a = nf4_block_absmax(t, block);
        for (; i < block_end; ++i) {
          const uint8_t byte = t.packed[i / 2];
          *dst++ = kNf4Code[(i & 1) ? (byte & 15) : (byte >> 4)] * a;
        }
      }
      return;
    }
    default:
      std::memcpy(dst, W.f32 + flat, size_t(count) * sizeof(float));
      return;
  }
}

// op(A)[M, K] of fp32: element (i, k) at p[i*ld + k] (k_contiguous) or p[k*ld + i].
struct ASource {
  const float* p;
  int64_t ld;
  bool k_contiguous;
};

// op(B)[K, N]: element (k, n) is the weight/matrix element (n, k) when
// k_contiguous (flat n*ld + k), else (k, n) (flat k*ld + n), ld = w.in.
struct BSource {
  WeightRef w;
  bool k_contiguous;
};

struct Problem {
  int64_t M, N, K;
  float alpha, beta;
  ASource a;
  BSource b;
  float* c;
  int64_t ldc;
  bool c_trans = false;  // C is stored transposed: element (i, j) at c[j*ldc + i]
};

// How gemm_blocked splits one product, and the scratch floats it needs.
struct Blocking {
  int64_t n_parts = 0, n_chunk = 0, m_parts = 0, m_chunk = 0;  // work grid
  int64_t kc_max = 0;                 // depth of a KC slice
  bool pack_a = false;                // A packed once and shared
  int64_t m_pad = 0, k_chunk = 0;     // packed A: rows (M rounded to MR), K per chunk
  int64_t b_floats = 0;               // per thread: B block of the widest item
  int64_t tile_floats = 0;            // per thread: NF4 tile (0 for other weights)
  int64_t shared_a_floats = 0;        // once: packed A
  bool empty = true;                  // nothing to multiply (no scratch)
};

// B[k0 : k0+kc, n0 : n0+nlen] -> NR-wide panels dst[panel][k][NR];
// `tile` holds max(NR * KC, nlen) floats for NF4 dequantization.
void pack_b(const IsaKernels& ik, const BSource& B, int64_t k0, int64_t kc, int64_t n0,
            int64_t nlen, float* dst, float* tile) {
  const int nr = ik.nr;
  const WeightRef& W = B.w;
  const int64_t ld = W.in;
  const int64_t panels = ceil_div(nlen, nr);
  if (B.k_contiguous) {
    for (int64_t q = 0; q < panels; ++q) {
      const int rows = int(std::min<int64_t>(nr, nlen - q * nr));
      const int64_t n = n0 + q * nr;
      float* d = dst + q * kc * nr;
      switch (W.dtype) {
        case DType::F32: ik.transpose_panel(W.f32 + n * ld + k0, ld, rows, kc, nr, d); break;
        case DType::BF16: ik.transpose_panel_bf16(W.bf16 + n * ld + k0, ld, rows, kc, nr, d); break;
        default:
          for (int r = 0; r < rows; ++r) weight_range_to_f32(ik, W, (n + r) * ld + k0, kc, tile + r * kc);
          ik.transpose_panel(tile, kc, rows, kc, nr, d);
          break;
      }
    }
    return;
  }
  if (W.dtype == DType::BF16) {
    ik.bf16_rows_to_panels(W.bf16 + k0 * ld + n0, ld, kc, nlen, dst);
    return;
  }
  for (int64_t k = 0; k < kc; ++k) {
    const int64_t flat = (k0 + k) * ld + n0;
    const float* row = W.f32 + flat;
    if (W.dtype == DType::NF4) {
      weight_range_to_f32(ik, W, flat, nlen, tile);
      row = tile;
    }
    for (int64_t q = 0; q < panels; ++q) {
      const int64_t cols = std::min<int64_t>(nr, nlen - q * nr);
      float* d = dst + q * kc * nr + k * nr;
      std::memcpy(d, row + q * nr, size_t(cols) * sizeof(float));
      for (int64_t j = cols; j < nr; ++j) d[j] = 0.0f;
    }
  }
}

// Depth of a KC slice: K cut into slices of at most kKC, as even as possible.
int64_t slice_depth(int64_t K) {
  const int64_t slices = ceil_div(K, kKC);
  return std::min(K, ceil_div(ceil_div(K, slices), 8) * 8);
}

// Work grid: columns first (each column range packs its B block once, and A
// is read in place, so splitting columns duplicates nothing); rows are split
// only when there are fewer than two column ranges per thread (splitting rows
// re-packs B once per row range). Several items per thread let the dynamic
// schedule even out unequal items. A k-contiguous A used by several column
// panels is packed once (its panels split over the threads) and shared, in
// chunks of K of at most kPackedA floats; otherwise A is read in place
// (transposed A is already row-panel shaped, and with one or two column panels
// each A value is used once or twice).
Blocking plan_blocking(const IsaKernels& ik, const Problem& p, int threads) {
  Blocking g;
  if (p.M <= 0 || p.N <= 0 || p.K <= 0 || p.alpha == 0.0f) return g;
  g.empty = false;
  const int64_t target = threads > 1 ? 4 * int64_t(threads) : 1;
  const int64_t nb = ceil_div(p.N, ik.nr), mb = ceil_div(p.M, ik.mr);
  g.n_parts = std::min(nb, std::max(ceil_div(p.N, kNCMax), target));
  g.n_chunk = ceil_div(nb, g.n_parts) * ik.nr;
  g.n_parts = ceil_div(p.N, g.n_chunk);
  g.m_parts = g.n_parts < 2 * threads ? std::min(mb, ceil_div(target, g.n_parts)) : 1;
  g.m_chunk = ceil_div(mb, g.m_parts) * ik.mr;
  g.m_parts = ceil_div(p.M, g.m_chunk);
  g.kc_max = slice_depth(p.K);
  const int64_t widest = std::min(g.n_chunk, p.N);  // columns of the widest item
  g.b_floats = g.kc_max * ceil_div(widest, ik.nr) * ik.nr;
  if (p.b.w.dtype == DType::NF4) g.tile_floats = std::max<int64_t>(ik.nr * g.kc_max, widest);
  g.pack_a = p.a.k_contiguous && nb > 2;
  if (g.pack_a) {
    g.m_pad = mb * ik.mr;
    g.k_chunk = std::max<int64_t>(1, kPackedA / (g.m_pad * g.kc_max)) * g.kc_max;
    g.shared_a_floats = g.m_pad * std::min(g.k_chunk, p.K);
  }
  return g;
}

// op(A)[all rows, k_begin : k_end] packed once per GEMM and shared by every
// work item: KC slice by slice (slice depth kc), each slice MR-wide panels,
// panel q of the slice at k0 at (k0 - k_begin) * m_pad + q * kc * MR, rows past
// M zero (m_pad = M rounded up to MR).
void pack_a_panel(const IsaKernels& ik, const ASource& A, int64_t M, int64_t k_begin,
                  int64_t k_end, int64_t kc_max, int64_t m_pad, int64_t slice, int64_t q,
                  float* dst) {
  const int mr = ik.mr;
  const int64_t k0 = k_begin + slice * kc_max, kc = std::min(kc_max, k_end - k0);
  const int rows = int(std::min<int64_t>(mr, M - q * mr));
  ik.transpose_panel(A.p + q * mr * A.ld + k0, A.ld, rows, kc, mr,
                     dst + (k0 - k_begin) * m_pad + q * kc * mr);
}

// One work item: C[m0:m1, n0:n1] over op(A)[:, k_begin:k_end], the first KC
// slice of K applying beta. A is read from the shared packed copy `ap` (see
// pack_a_panel) or, when null, in place. Only the item's B columns are packed
// (weights dequantized here, one KC slice at a time); each B panel is then run
// against every MR-row tile of an MC block.
void run_item(const IsaKernels& ik, const Problem& p, const Blocking& g, ThreadScratch& s,
              int64_t m0, int64_t m1, int64_t n0, int64_t n1, int64_t k_begin, int64_t k_end,
              const float* ap) {
  const int mr = ik.mr, nr = ik.nr;
  const int64_t mc_max = std::max<int64_t>(mr, kMCTarget / mr * mr);
  const int64_t nlen = n1 - n0, panels = ceil_div(nlen, nr);
  const int64_t kc_max = g.kc_max, m_pad = g.m_pad;
  float* bp = grow(s.b, g.b_floats);
  float* tile = g.tile_floats ? grow(s.tile, g.tile_floats) : nullptr;
  alignas(64) float edge[32 * 32];  // one micro-tile of a transposed C (mr, nr <= 32)
  const ASource& A = p.a;
  const int64_t a_ld = ap ? mr : A.ld;
  const bool a_kcontig = ap ? false : A.k_contiguous;

  for (int64_t k0 = k_begin; k0 < k_end; k0 += kc_max) {
    const int64_t kc = std::min(kc_max, k_end - k0);
    const float beta = k0 == 0 ? p.beta : 1.0f;
    pack_b(ik, p.b, k0, kc, n0, nlen, bp, tile);
    for (int64_t i0 = m0; i0 < m1; i0 += mc_max) {
      const int64_t i1 = std::min(m1, i0 + mc_max);
      for (int64_t q = 0; q < panels; ++q) {
        const int cols = int(std::min<int64_t>(nr, nlen - q * nr));
        const float* bq = bp + q * kc * nr;
        const int64_t j = n0 + q * nr;
        for (int64_t i = i0; i < i1; i += mr) {
          const int rows = int(std::min<int64_t>(mr, i1 - i));
          const float* a = ap ? ap + (k0 - k_begin) * m_pad + i * kc
                           : A.k_contiguous ? A.p + i * A.ld + k0 : A.p + k0 * A.ld + i;
          if (!p.c_trans) {
            ik.micro(kc, a, a_ld, a_kcontig, bq, p.c + i * p.ldc + j, p.ldc, p.alpha, beta, rows,
                     cols);
            continue;
          }
          ik.micro(kc, a, a_ld, a_kcontig, bq, edge, nr, 1.0f, 0.0f, rows, cols);
          for (int jj = 0; jj < cols; ++jj)
            for (int ii = 0; ii < rows; ++ii) {
              float& out = p.c[(j + jj) * p.ldc + i + ii];
              out = beta == 0.0f ? p.alpha * edge[ii * nr + jj]
                                 : p.alpha * edge[ii * nr + jj] + beta * out;
            }
        }
      }
    }
  }
}

// C = beta * C (beta == 0: zeros, whatever C held).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    if (beta == 0.0f) {
      std::fill(c, c + N, 0.0f);
    } else if (beta != 1.0f) {
      for (int64_t j = 0; j < N; ++j) c[j] *= beta;
    }
  }
}

void gemm_blocked(const IsaKernels& ik, const Problem& p) {
  if (p.M <= 0 || p.N <= 0) return;
  if (p.K <= 0 || p.alpha == 0.0f) {
    if (p.c_trans) {
      scale_c(p.N, p.M, p.beta, p.c, p.ldc);
    } else {
      scale_c(p.M, p.N, p.beta, p.c, p.ldc);
    }
    return;
  }
  const Blocking g = plan_blocking(ik, p, num_threads());
  CallerScratch& cs = caller_scratch();
  auto run_items = [&](int64_t k_begin, int64_t k_end, const float* ap) {
    parallel_for(g.n_parts * g.m_parts, 1, [&](int64_t begin, int64_t end, int thread) {
      ThreadScratch& s = cs.slots[size_t(thread)];
      for (int64_t item = begin; item < end; ++item) {
        const int64_t mi = item / g.n_parts, ni = item % g.n_parts;
        const int64_t m0 = mi * g.m_chunk, n0 = ni * g.n_chunk;
        run_item(ik, p, g, s, m0, std::min(p.M, m0 + g.m_chunk), n0,
                 std::min(p.N, n0 + g.n_chunk), k_begin, k_end, ap);
      }
    });
  };
  if (!g.pack_a) {
    run_items(0, p.K, nullptr);
    return;
  }
  const int64_t mb = g.m_pad / ik.mr;
  float* ap = grow(cs.shared_a, g.shared_a_floats);
  for (int64_t k_begin = 0; k_begin < p.K; k_begin += g.k_chunk) {
    const int64_t k_end = std::min(p.K, k_begin + g.k_chunk);
    const int64_t slices = ceil_div(k_end - k_begin, g.kc_max);
    parallel_for(slices * mb, 1, [&](int64_t begin, int64_t end, int) {
      for (int64_t t = begin; t < end; ++t)
        pack_a_panel(ik, p.a, p.M, k_begin, k_end, g.kc_max, g.m_pad, t / mb, t % mb, ap);
    });
    run_items(k_begin, k_end, ap);
  }
}

const IsaKernels& kernels() {
#if defined(LS_HAVE_X86_KERNELS)
  switch (active_isa()) {
    case Isa::Avx512: return avx512_kernels();
    case Isa::Avx2: return avx2_kernels();
    default: break;
  }
#endif
  return portable_kernels();
}

WeightRef dense(const float* p, int64_t ld) {
  WeightRef w;
  w.dtype = DType::F32;
  w.f32 = p;
  w.in = ld;
  return w;
}

// ---- few tokens: stream each weight row once --------------------------------

constexpr int64_t kSkinnyForwardGrain = 16;  // weight rows per range
constexpr int kSkinnyRows = 4;                // weight rows added per pass over a dX chunk

void linear_forward_skinny(const IsaKernels& ik, const WeightRef& W, const float* X, int64_t T,
                           float* Y, bool accumulate) {
  const int64_t in = W.in, out = W.out;
  CallerScratch& cs = caller_scratch();
  parallel_for(out, kSkinnyForwardGrain, [&](int64_t n0, int64_t n1, int thread) {
    float* row = W.dtype == DType::F32 ? nullptr : grow(cs.slots[size_t(thread)].tile, in);
    for (int64_t n = n0; n < n1; ++n) {
      const float* w = W.f32 + n * in;
      if (W.dtype != DType::F32) {
        weight_range_to_f32(ik, W, n * in, in, row);
        w = row;
      }
      ik.dot_rows(X, in, T, w, in, Y + n, out, accumulate);
    }
  });
}

void linear_backward_input_skinny(const IsaKernels& ik, const WeightRef& W, const float* dY,
                                  int64_t T, float* dX, bool accumulate) {
  const int64_t in = W.in, out = W.out;
  constexpr int kRows = kSkinnyRows;
  const int64_t chunks = ceil_div(in, kSkinnyColumns);
  CallerScratch& cs = caller_scratch();
  parallel_for(chunks, 1, [&](int64_t c0, int64_t c1, int thread) {
    ThreadScratch& s = cs.slots[size_t(thread)];
    float* acc = grow(s.a, T * kSkinnyColumns);
    float* rows = W.dtype == DType::F32 ? nullptr : grow(s.tile, kRows * kSkinnyColumns);
    for (int64_t chunk = c0; chunk < c1; ++chunk) {
      const int64_t k0 = chunk * kSkinnyColumns, klen = std::min(kSkinnyColumns, in - k0);
      std::fill(acc, acc + T * klen, 0.0f);
      for (int64_t n = 0; n < out; n += kRows) {
        const int r = int(std::min<int64_t>(kRows, out - n));
        const float* w = W.f32 + n * in + k0;
        int64_t ldw = in;
        if (W.dtype != DType::F32) {
          for (int j = 0; j < r; ++j) weight_range_to_f32(ik, W, (n + j) * in + k0, klen, rows + j * klen);
          w = rows;
          ldw = klen;
        }
        for (int64_t t = 0; t < T; ++t) ik.axpy_rows(klen, dY + t * out + n, r, w, ldw, acc + t * klen);
      }
      for (int64_t t = 0; t < T; ++t) {
        float* d = dX + t * in + k0;
        const float* a = acc + t * klen;
        if (accumulate) {
          for (int64_t k = 0; k < klen; ++k) d[k] += a[k];
        } else {
          std::memcpy(d, a, size_t(klen) * sizeof(float));
        }
      }
    }
  });
}

// Scalar element (r, c) of a weight, the specification of every dequantization.
float weight_element(const WeightRef& W, int64_t r, int64_t c) {
  const int64_t flat = r * W.in + c;
  switch (W.dtype) {
    case DType::BF16: return bf16_to_f32(W.bf16[flat]);
    case DType::NF4: {
      const uint8_t byte = W.nf4.packed[flat / 2];
      const int nibble = (flat & 1) ? (byte & 15) : (byte >> 4);
      return kNf4Code[nibble] * nf4_block_absmax(W.nf4, flat / kNf4BlockSize);
    }
    default: return W.f32[flat];
  }
}

}  // namespace

const IsaKernels& portable_kernels() {
  static const IsaKernels k = {Isa::Scalar,
                               kPortableMR,
                               kPortableNR,
                               micro_portable,
                               transpose_panel_portable,
                               transpose_panel_bf16_portable,
                               bf16_rows_to_panels_portable,
                               bf16_to_f32_portable,
                               nf4_blocks_to_f32_portable,
                               dot_rows_portable,
                               axpy_rows_portable,
                               peak_loop_portable};
  return k;
}

}  // namespace gemm

// ============================================================================
// Public entry points
// ============================================================================

namespace gemm {
namespace {

Problem sgemm_problem(const IsaKernels& ik, bool transA, bool transB, int64_t M, int64_t N,
                      int64_t K, float alpha, const float* A, int64_t lda, const float* B,
                      int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= ik.nr && N >= 4 * M) {
    // Few rows, many columns (a LoRA gradient duᵀ·x): packing op(B) would cost
    // as much as the product. Compute Cᵀ = op(B)ᵀ·op(A)ᵀ instead, reading op(B)
    // in place and packing the small op(A).
    return Problem{N, M, K, alpha, beta, {B, ldb, transB}, {dense(A, lda), !transA}, C, ldc, true};
  }
  return Problem{M, N, K, alpha, beta, {A, lda, !transA}, {dense(B, ldb), transB}, C, ldc};
}

// Y[T, out] = X[T, in] · Wᵀ: op(B)[k, n] = W[n, k].
Problem linear_forward_problem(const WeightRef& W, const float* X, int64_t T, float* Y,
                               bool accumulate) {
  return Problem{T, W.out, W.in, 1.0f, accumulate ? 1.0f : 0.0f, {X, W.in, true}, {W, true},
                 Y, W.out};
}

// dX[T, in] = dY[T, out] · W: op(B)[k, n] = W[k, n].
Problem linear_backward_problem(const WeightRef& W, const float* dY, int64_t T, float* dX,
                                bool accumulate) {
  return Problem{T, W.in, W.out, 1.0f, accumulate ? 1.0f : 0.0f, {dY, W.out, true}, {W, false},
                 dX, W.in};
}

GemmScratch blocked_scratch(const IsaKernels& ik, const Problem& p, int threads) {
  GemmScratch s;
  const Blocking g = plan_blocking(ik, p, threads);
  if (g.empty) return s;
  s.threads = parallel_for_max_threads(g.n_parts * g.m_parts, 1, threads);
  s.b = g.b_floats;
  s.tile = g.tile_floats;
  s.shared_a = g.shared_a_floats;
  return s;
}

WeightRef shape_only(DType dtype, int64_t out, int64_t in) {
  WeightRef w;
  w.dtype = dtype;
  w.out = out;
  w.in = in;
  return w;
}

}  // namespace
}  // namespace gemm

void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  const gemm::IsaKernels& ik = gemm::kernels();
  gemm::gemm_blocked(ik, gemm::sgemm_problem(ik, transA, transB, M, N, K, alpha, A, lda, B, ldb,
                                             beta, C, ldc));
}

void linear_forward(const WeightRef& W, const float* X, int64_t T, float* Y, bool accumulate) {
  const gemm::IsaKernels& ik = gemm::kernels();
  if (T <= 0 || W.out <= 0) return;
  if (T <= gemm::kSkinnyTokens && W.in > 0) {
    gemm::linear_forward_skinny(ik, W, X, T, Y, accumulate);
    return;
  }
  gemm::gemm_blocked(ik, gemm::linear_forward_problem(W, X, T, Y, accumulate));
}

void linear_backward_input(const WeightRef& W, const float* dY, int64_t T, float* dX,
                           bool accumulate) {
  const gemm::IsaKernels& ik = gemm::kernels();
  if (T <= 0 || W.in <= 0) return;
  if (T <= gemm::kSkinnyTokens && W.out > 0) {
    gemm::linear_backward_input_skinny(ik, W, dY, T, dX, accumulate);
    return;
  }
  gemm::gemm_blocked(ik, gemm::linear_backward_problem(W, dY, T, dX, accumulate));
}

// ---- scratch sizes (the memory plan) and release ------------------------------

GemmScratch sgemm_scratch(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                          int threads) {
  const gemm::IsaKernels& ik = gemm::kernels();
  return gemm::blocked_scratch(
      ik, gemm::sgemm_problem(ik, transA, transB, M, N, K, alpha, nullptr, 0, nullptr, 0, 0.f,
                              nullptr, 0),
      threads);
}

GemmScratch linear_forward_scratch(DType dtype, int64_t out, int64_t in, int64_t T, int threads) {
  const gemm::IsaKernels& ik = gemm::kernels();
  GemmScratch s;
  if (T <= 0 || out <= 0) return s;
  if (T <= gemm::kSkinnyTokens && in > 0) {
    if (dtype != DType::F32) {
      s.threads = parallel_for_max_threads(out, gemm::kSkinnyForwardGrain, threads);
      s.tile = in;
    }
    return s;
  }
  return gemm::blocked_scratch(
      ik, gemm::linear_forward_problem(gemm::shape_only(dtype, out, in), nullptr, T, nullptr, false),
      threads);
}

GemmScratch linear_backward_input_scratch(DType dtype, int64_t out, int64_t in, int64_t T,
                                          int threads) {
  const gemm::IsaKernels& ik = gemm::kernels();
  GemmScratch s;
  if (T <= 0 || in <= 0) return s;
  if (T <= gemm::kSkinnyTokens && out > 0) {
    s.threads = parallel_for_max_threads(gemm::ceil_div(in, gemm::kSkinnyColumns), 1, threads);
    s.a = T * gemm::kSkinnyColumns;
    if (dtype != DType::F32) s.tile = gemm::kSkinnyRows * gemm::kSkinnyColumns;
    return s;
  }
  return gemm::blocked_scratch(
      ik, gemm::linear_backward_problem(gemm::shape_only(dtype, out, in), nullptr, T, nullptr, false),
      threads);
}

void gemm_release_scratch() { gemm::t_caller = gemm::CallerScratch{}; }

void weight_rows_to_f32(const WeightRef& W, int64_t row_begin, int64_t row_end, float* out) {
  const gemm::IsaKernels& ik = gemm::kernels();
  const int64_t in = W.in;
  parallel_for(row_end - row_begin, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, in)),
               [&](int64_t r0, int64_t r1, int) {
                 gemm::weight_range_to_f32(ik, W, (row_begin + r0) * in, (r1 - r0) * in,
                                           out + r0 * in);
               });
}

double measure_peak_flops(double seconds) {
  const gemm::IsaKernels& ik = gemm::kernels();
  const int threads = num_threads();
  std::vector<double> flops(size_t(threads), 0.0);
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  // One item per thread; each runs until the common deadline, so a thread that
  // happens to take two items adds nothing for the second.
  parallel_for(threads, 1, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) {
      const double left = seconds - std::chrono::duration<double>(Clock::now() - start).count();
      flops[size_t(i)] = ik.peak_loop(std::max(0.0, left));
    }
  });
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  double total = 0.0;
  for (double f : flops) total += f;
  return elapsed > 0.0 ? total / elapsed : 0.0;
}

// ============================================================================
// Scalar references (the specification; double accumulation)
// ============================================================================

void sgemm_reference(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                     float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double sum = 0.0;
      if (alpha != 0.0f) {
        for (int64_t k = 0; k < K; ++k) {
          const float a = transA ? A[k * lda + i] : A[i * lda + k];
          const float b = transB ? B[j * ldb + k] : B[k * ldb + j];
          sum += double(a) * double(b);
        }
      }
      float& c = C[i * ldc + j];
      const float prod = alpha == 0.0f ? 0.0f : float(double(alpha) * sum);
      c = beta == 0.0f ? prod : prod + beta * c;
    }
  }
}

void linear_forward_reference(const WeightRef& W, const float* X, int64_t T, float* Y,
                              bool accumulate) {
  std::vector<float> row(size_t(std::max<int64_t>(W.in, 0)));
  for (int64_t n = 0; n < W.out; ++n) {
    for (int64_t k = 0; k < W.in; ++k) row[size_t(k)] = gemm::weight_element(W, n, k);
    for (int64_t t = 0; t < T; ++t) {
      double sum = 0.0;
      for (int64_t k = 0; k < W.in; ++k) sum += double(X[t * W.in + k]) * double(row[size_t(k)]);
      float& y = Y[t * W.out + n];
      y = accumulate ? y + float(sum) : float(sum);
    }
  }
}

void linear_backward_input_reference(const WeightRef& W, const float* dY, int64_t T, float* dX,
                                     bool accumulate) {
  std::vector<double> acc(size_t(std::max<int64_t>(T * W.in, 0)), 0.0);
  for (int64_t n = 0; n < W.out; ++n)
    for (int64_t k = 0; k < W.in; ++k) {
      const double w = gemm::weight_element(W, n, k);
      for (int64_t t = 0; t < T; ++t) acc[size_t(t * W.in + k)] += double(dY[t * W.out + n]) * w;
    }
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < W.in; ++k) {
      float& d = dX[t * W.in + k];
      const float v = float(acc[size_t(t * W.in + k)]);
      d = accumulate ? d + v : v;
    }
}

}  // namespace ls
