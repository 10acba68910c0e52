// GEMM and linear-layer kernels against their scalar references, on odd sizes,
// every transpose combination, padded leading dimensions, alpha/beta,
// accumulate, and fp32 / bf16 / NF4 weights. Runs under whatever ISA
// LORA_STUDIO_ISA selects. LS_BENCH=1 also runs the throughput benchmark.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "check.h"
#include "common/cpu.h"
#include "common/dtype.h"
#include "common/memory.h"
#include "common/threads.h"
#include "kernels/gemm.h"
#include "kernels/nf4.h"

using namespace ls;

namespace {

constexpr double kEps = 1.1920929e-7;

// Rounding error of a K-term fp32 dot product of values in [-1, 1]: the sum
// is of size ~sqrt(K), and each of its K additions errs by eps of that.
double dot_tolerance(int64_t K, double scale) {
  return 4.0 * kEps * std::sqrt(double(K)) * (std::sqrt(double(K)) + 1.0) * scale + 1e-30;
}

std::string shape_name(const char* what, int64_t a, int64_t b, int64_t c) {
  return std::string(what) + " " + std::to_string(a) + "x" + std::to_string(b) + "x" + std::to_string(c);
}

// A frozen weight in one storage type, owning its buffers.
struct TestWeight {
  WeightRef ref;
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  std::vector<uint8_t> packed, absmax_q;
  std::vector<float> scale;

  TestWeight(DType dtype, int64_t out, int64_t in, uint32_t seed) {
    std::vector<float> w = lstest::random_vector(size_t(out * in), seed);
    ref.dtype = dtype;
    ref.out = out;
    ref.in = in;
    if (dtype == DType::F32) {
      f32 = w;
      ref.f32 = f32.data();
    } else if (dtype == DType::BF16) {
      for (float x : w) bf16.push_back(f32_to_bf16(x));
      ref.bf16 = bf16.data();
    } else {
      const int64_t n = out * in, nb = n / kNf4BlockSize;
      packed.resize(size_t(n / 2));
      absmax_q.resize(size_t(nb));
      scale.resize(size_t((nb + kNf4AbsmaxBlock - 1) / kNf4AbsmaxBlock));
      std::vector<float> absmax(static_cast<size_t>(nb));
      nf4_quantize_blocks(w.data(), n, packed.data(), absmax.data());
      float mean = 0.f;
      nf4_double_quantize(absmax.data(), nb, absmax_q.data(), scale.data(), &mean);
      ref.nf4 = Nf4Tensor{out, in, packed.data(), absmax_q.data(), scale.data(), mean};
    }
  }
};

const char* dtype_name(DType d) {
  return d == DType::F32 ? "f32" : d == DType::BF16 ? "bf16" : "nf4";
}

void check_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, float beta,
                 int64_t pad, uint32_t seed) {
  const int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
  const int64_t arows = ta ? K : M, brows = tb ? N : K;
  std::vector<float> A = lstest::random_vector(size_t(arows * lda), seed);
  std::vector<float> B = lstest::random_vector(size_t(brows * ldb), seed + 1);
  std::vector<float> C = lstest::random_vector(size_t(M * ldc), seed + 2);
  if (beta == 0.0f)  // beta == 0 must overwrite, NaNs included
    for (auto& c : C) c = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> R = C;
  sgemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
  sgemm_reference(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, R.data(), ldc);
  std::string why;
  const double tol = dot_tolerance(K, std::fabs(alpha)) + 2 * kEps * std::fabs(beta);
  bool ok = true;
  for (int64_t i = 0; i < M && ok; ++i)
    ok = lstest::all_close(C.data() + i * ldc, R.data() + i * ldc, size_t(N), tol, 1e-6, &why);
  // The padding between rows of C must be untouched.
  for (int64_t i = 0; i < M && ok; ++i)
    for (int64_t j = N; j < ldc; ++j) {
      const float c = C[size_t(i * ldc + j)], r = R[size_t(i * ldc + j)];
      ok = ok && (c == r || (std::isnan(c) && std::isnan(r)));
    }
  char head[160];
  std::snprintf(head, sizeof head, "sgemm %c%c M=%lld N=%lld K=%lld alpha=%g beta=%g pad=%lld: ",
                ta ? 'T' : 'N', tb ? 'T' : 'N', (long long)M, (long long)N, (long long)K,
                double(alpha), double(beta), (long long)pad);
  CHECK_MSG(ok, std::string(head) + (why.empty() ? "padding of C changed" : why));
}

void check_linear(DType dtype, int64_t T, int64_t out, int64_t in, bool accumulate, uint32_t seed) {
  TestWeight w(dtype, out, in, seed);
  std::vector<float> X = lstest::random_vector(size_t(T * in), seed + 7);
  std::vector<float> Y = lstest::random_vector(size_t(T * out), seed + 8);
  if (!accumulate)
    for (auto& y : Y) y = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> Yref = Y;
  linear_forward(w.ref, X.data(), T, Y.data(), accumulate);
  linear_forward_reference(w.ref, X.data(), T, Yref.data(), accumulate);
  std::string why;
  bool ok = lstest::all_close(Y.data(), Yref.data(), Y.size(), dot_tolerance(in, 1.0) + 2 * kEps, 1e-6, &why);
  CHECK_MSG(ok, std::string("linear_forward ") + dtype_name(dtype) + " T=" + std::to_string(T) +
                    " out=" + std::to_string(out) + " in=" + std::to_string(in) +
                    (accumulate ? " acc: " : ": ") + why);

  std::vector<float> dY = lstest::random_vector(size_t(T * out), seed + 9);
  std::vector<float> dX = lstest::random_vector(size_t(T * in), seed + 10);
  if (!accumulate)
    for (auto& d : dX) d = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> dXref = dX;
  linear_backward_input(w.ref, dY.data(), T, dX.data(), accumulate);
  linear_backward_input_reference(w.ref, dY.data(), T, dXref.data(), accumulate);
  why.clear();
  ok = lstest::all_close(dX.data(), dXref.data(), dX.size(), dot_tolerance(out, 1.0) + 2 * kEps, 1e-6, &why);
  CHECK_MSG(ok, std::string("linear_backward_input ") + dtype_name(dtype) + " T=" + std::to_string(T) +
                    " out=" + std::to_string(out) + " in=" + std::to_string(in) +
                    (accumulate ? " acc: " : ": ") + why);
}

}  // namespace

TEST(gemm_sgemm_small_odd_sizes_all_transposes) {
  const int64_t sizes[] = {1, 3, 17, 63, 64, 65, 129};
  const float alphas[] = {1.0f, -0.75f};
  const float betas[] = {0.0f, 1.0f, 0.5f};
  uint32_t seed = 1;
  int index = 0;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (int64_t M : sizes)
        for (int64_t N : sizes)
          for (int64_t K : sizes) {
            ++index;
            if ((M * N * K) % 3 != index % 3 && M > 3 && N > 3 && K > 3) continue;  // thin the grid
            check_sgemm(ta, tb, M, N, K, alphas[index % 2], betas[index % 3], index % 4 == 0 ? 0 : 3,
                        seed++);
          }
}

TEST(gemm_sgemm_large_odd_sizes) {
  check_sgemm(false, false, 1000, 67, 129, 1.0f, 0.0f, 0, 11);
  check_sgemm(false, true, 63, 1001, 257, 1.0f, 1.0f, 5, 12);
  check_sgemm(true, false, 129, 130, 1000, 0.5f, 0.5f, 1, 13);
  check_sgemm(true, true, 257, 300, 513, -1.0f, 0.0f, 2, 14);
  check_sgemm(false, false, 512, 16, 1000, 1.0f, 0.0f, 0, 15);  // LoRA x·Aᵀ-like: tiny N
  check_sgemm(false, true, 512, 1000, 16, 1.0f, 1.0f, 0, 16);   // tiny K
  check_sgemm(true, false, 16, 1000, 512, 1.0f, 0.0f, 0, 17);   // LoRA gradient-like: tiny M
}

TEST(gemm_sgemm_alpha_zero_or_empty_k_scales_c) {
  std::vector<float> A(12, std::numeric_limits<float>::infinity()), B(12, 1.0f);
  std::vector<float> C = {1, 2, 3, 4, 5, 6};
  sgemm(false, false, 2, 3, 4, 0.0f, A.data(), 4, B.data(), 3, 2.0f, C.data(), 3);
  CHECK(C[0] == 2.0f && C[5] == 12.0f);
  sgemm(false, false, 2, 3, 0, 1.0f, A.data(), 4, B.data(), 3, 0.5f, C.data(), 3);
  CHECK(C[0] == 1.0f && C[5] == 6.0f);
  for (auto& c : C) c = std::numeric_limits<float>::quiet_NaN();
  sgemm(false, false, 2, 3, 0, 1.0f, A.data(), 4, B.data(), 3, 0.0f, C.data(), 3);
  for (float c : C) CHECK(c == 0.0f);
}

TEST(gemm_linear_f32_bf16_nf4_odd_shapes) {
  struct Shape { int64_t out, in; };
  const Shape shapes[] = {{3, 64}, {17, 192}, {130, 96}, {65, 320}, {1000, 64}, {64, 1000}};
  const int64_t tokens[] = {1, 3, 5, 8, 9, 17, 129};
  uint32_t seed = 100;
  int index = 0;
  for (DType dtype : {DType::F32, DType::BF16, DType::NF4})
    for (const Shape& s : shapes)
      for (int64_t T : tokens) {
        ++index;
        if (s.out * s.in > 50000 && T > 17) continue;
        check_linear(dtype, T, s.out, s.in, index % 2 == 0, seed++);
      }
}

TEST(gemm_linear_generation_one_token_large_weight) {
  for (DType dtype : {DType::F32, DType::BF16, DType::NF4}) {
    check_linear(dtype, 1, 576, 1536, false, 300);
    check_linear(dtype, 2, 1536, 576, true, 301);
  }
}

TEST(gemm_weight_rows_to_f32_matches_elementwise_dequantization) {
  for (DType dtype : {DType::BF16, DType::NF4, DType::F32}) {
    TestWeight w(dtype, 38, 96, 500);  // 96 % 64 != 0: NF4 blocks straddle rows
    std::vector<float> all(size_t(38 * 96)), part(size_t(20 * 96));
    weight_rows_to_f32(w.ref, 0, 38, all.data());
    weight_rows_to_f32(w.ref, 5, 25, part.data());
    bool same = true;
    for (size_t i = 0; i < part.size(); ++i) same = same && part[i] == all[5 * 96 + i];
    CHECK_MSG(same, std::string("row range differs: ") + dtype_name(dtype));
    // Element (r, c) through linear_forward_reference with a one-hot input.
    std::vector<float> x(96, 0.0f), y(38);
    bool exact = true;
    for (int c = 0; c < 96; c += 7) {
      x.assign(96, 0.0f);
      x[size_t(c)] = 1.0f;
      linear_forward_reference(w.ref, x.data(), 1, y.data(), false);
      for (int r = 0; r < 38; ++r) exact = exact && y[size_t(r)] == all[size_t(r * 96 + c)];
    }
    CHECK_MSG(exact, std::string("dequantized values differ from the reference: ") + dtype_name(dtype));
    if (dtype == DType::NF4) {
      std::vector<float> deq(all.size());
      nf4_dequantize(w.ref.nf4, 0, 38 * 96, deq.data());
      bool equal = true;
      for (size_t i = 0; i < deq.size(); ++i) equal = equal && deq[i] == all[i];
      CHECK_MSG(equal, "weight_rows_to_f32 differs from nf4_dequantize");
    }
  }
}

TEST(gemm_workspace_is_tracked) {
  std::vector<float> A = lstest::random_vector(200 * 300, 1), B = lstest::random_vector(300 * 200, 2);
  std::vector<float> C(200 * 200);
  const int w = int(MemCategory::Workspace);
  const int threads = num_threads();
  set_num_threads(1);  // the GEMM then runs on the calling thread alone
  int64_t before = 0, during = 0;
  std::thread t([&] {  // a fresh thread: its scratch is allocated, and freed when it exits
    before = mem_stats().current[w];
    sgemm(false, false, 200, 200, 300, 1.0f, A.data(), 300, B.data(), 200, 0.0f, C.data(), 200);
    during = mem_stats().current[w];
  });
  t.join();
  const int64_t after = mem_stats().current[w];
  set_num_threads(threads);
  CHECK(during > before);
  CHECK(after == before);
  CHECK(mem_stats().peak[w] >= during);
}

TEST(gemm_measure_peak_flops_is_positive) {
  const double peak = measure_peak_flops(0.02);
  CHECK(peak > 1e8);
}

// ---- Throughput (LS_BENCH=1 only; not a timed test) --------------------------
//
// The machines are shared and noisy, so each timed run is bracketed by two
// short peak measurements and its efficiency is taken against their mean; the
// best of a few runs is reported.

namespace {

struct Timing {
  double seconds = 1e30;     // fastest run
  double efficiency = 0.0;   // best flops/s over the peak measured beside it
};

template <class F>
Timing time_vs_peak(int reps, double flops, F&& f) {
  Timing out;
  f();  // warm up: scratch buffers, page faults
  for (int r = 0; r < reps; ++r) {
    const double p0 = measure_peak_flops(0.05);
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double p1 = measure_peak_flops(0.05);
    out.seconds = std::min(out.seconds, s);
    out.efficiency = std::max(out.efficiency, flops / s / (0.5 * (p0 + p1)));
  }
  return out;
}

}  // namespace

TEST(gemm_benchmark_vs_peak) {
  if (!std::getenv("LS_BENCH")) return;
  const double peak = measure_peak_flops(0.5);
  std::printf("    isa=%s threads=%d peak=%.1f GFLOP/s (register-only FMA loop)\n", isa_name(active_isa()),
              num_threads(), peak / 1e9);
  // ref_eff: efficiency of the bf16 run of the same shape; the ratio of
  // efficiencies is the time ratio with the machine's noise divided out.
  auto report = [&](const std::string& what, double flops, const Timing& t, double ref_eff) {
    std::printf("    %-30s %8.2f ms %7.1f GFLOP/s %5.1f%% of peak", what.c_str(), t.seconds * 1e3,
                flops / t.seconds / 1e9, 100.0 * t.efficiency);
    if (ref_eff > 0) std::printf("  (%.2fx bf16 time)", ref_eff / t.efficiency);
    std::printf("\n");
  };
  struct Case { int64_t M, N, K; };
  for (Case c : {Case{512, 4096, 4096}, Case{512, 2048, 8192}, Case{512, 14336, 4096}, Case{512, 576, 1536}}) {
    std::vector<float> A = lstest::random_vector(size_t(c.M * c.K), 1), B = lstest::random_vector(size_t(c.K * c.N), 2);
    std::vector<float> C(size_t(c.M * c.N));
    const double flops = 2.0 * c.M * c.N * c.K;
    for (int tb = 0; tb < 2; ++tb) {
      Timing t = time_vs_peak(3, flops, [&] {
        sgemm(false, tb, c.M, c.N, c.K, 1.0f, A.data(), c.K, B.data(), tb ? c.K : c.N, 0.0f, C.data(), c.N);
      });
      report(shape_name(tb ? "sgemm NT" : "sgemm NN", c.M, c.N, c.K), flops, t, 0);
    }
  }
  struct LinearCase { int64_t T, out, in; };
  for (LinearCase c : {LinearCase{512, 4096, 4096}, LinearCase{512, 14336, 4096}, LinearCase{512, 4096, 14336},
                       LinearCase{512, 2048, 2048}, LinearCase{512, 576, 1536}, LinearCase{1, 4096, 4096},
                       LinearCase{16, 4096, 4096}}) {
    std::vector<float> X = lstest::random_vector(size_t(c.T * c.in), 3), Y(size_t(c.T * c.out));
    std::vector<float> dY = lstest::random_vector(size_t(c.T * c.out), 4), dX(size_t(c.T * c.in));
    const double flops = 2.0 * c.T * c.out * c.in;
    const int reps = c.T == 1 ? 10 : 3;
    double bf16_fwd = 0, bf16_bwd = 0;
    for (DType d : {DType::BF16, DType::NF4, DType::F32}) {
      TestWeight w(d, c.out, c.in, 5);
      const Timing f = time_vs_peak(reps, flops, [&] { linear_forward(w.ref, X.data(), c.T, Y.data(), false); });
      const Timing b = time_vs_peak(reps, flops, [&] { linear_backward_input(w.ref, dY.data(), c.T, dX.data(), false); });
      if (d == DType::BF16) { bf16_fwd = f.efficiency; bf16_bwd = b.efficiency; }
      report(std::string("fwd ") + dtype_name(d) + shape_name("", c.T, c.out, c.in), flops, f,
             d == DType::BF16 ? 0 : bf16_fwd);
      report(std::string("bwd ") + dtype_name(d) + shape_name("", c.T, c.out, c.in), flops, b,
             d == DType::BF16 ? 0 : bf16_bwd);
    }
  }
}

// The GEMMs of one SmolLM2-135M layer in a LoRA training step (seq 512,
// rank 16 on all seven projections): the frozen-weight forward and backward
// products, and the six small LoRA products per projection.
TEST(gemm_benchmark_training_layer) {
  if (!std::getenv("LS_BENCH")) return;
  struct Proj { int64_t out, in; };
  const Proj projs[] = {{576, 576}, {192, 576}, {192, 576}, {576, 576}, {1536, 576}, {1536, 576}, {576, 1536}};
  const int64_t T = 512, r = 16;
  std::vector<float> X = lstest::random_vector(size_t(T * 1536), 3), Y(size_t(T * 1536));
  std::vector<float> dY = lstest::random_vector(size_t(T * 1536), 4), dX(size_t(T * 1536));
  std::vector<float> LA = lstest::random_vector(size_t(r * 1536), 5), LB = lstest::random_vector(size_t(1536 * r), 6);
  std::vector<float> H = lstest::random_vector(size_t(T * r), 7), dU(size_t(T * r));
  std::vector<float> gA(size_t(r * 1536)), gB(size_t(1536 * r));
  double big_flops = 0, lora_flops = 0;
  for (const Proj& p : projs) {
    big_flops += 2.0 * 2.0 * T * p.out * p.in;
    lora_flops += 6.0 * 2.0 * T * r * (p.out + p.in) / 2.0;
  }
  for (DType d : {DType::BF16, DType::NF4}) {
    std::vector<TestWeight> ws;
    for (const Proj& p : projs) ws.emplace_back(d, p.out, p.in, 9);
    const Timing big = time_vs_peak(5, big_flops, [&] {
      for (size_t i = 0; i < ws.size(); ++i) {
        linear_forward(ws[i].ref, X.data(), T, Y.data(), false);
        linear_backward_input(ws[i].ref, dY.data(), T, dX.data(), false);
      }
    });
    std::printf("    layer %-4s fwd+bwd frozen  %8.2f ms %5.1f%% of peak\n", dtype_name(d), big.seconds * 1e3,
                100.0 * big.efficiency);
    if (std::getenv("LS_BENCH_DETAIL"))
      for (size_t i = 0; i < ws.size(); ++i) {
        const double f = 2.0 * T * projs[i].out * projs[i].in;
        const Timing tf = time_vs_peak(5, f, [&] { linear_forward(ws[i].ref, X.data(), T, Y.data(), false); });
        const Timing tb = time_vs_peak(5, f, [&] { linear_backward_input(ws[i].ref, dY.data(), T, dX.data(), false); });
        std::printf("      %-4s out=%-5lld in=%-5lld fwd %6.3f ms %5.1f%%  bwd %6.3f ms %5.1f%%\n", dtype_name(d),
                    (long long)projs[i].out, (long long)projs[i].in, tf.seconds * 1e3, 100.0 * tf.efficiency,
                    tb.seconds * 1e3, 100.0 * tb.efficiency);
      }
  }
  const Timing lora = time_vs_peak(5, lora_flops, [&] {
    for (const Proj& p : projs) {
      sgemm(false, true, T, r, p.in, 1.0f, X.data(), p.in, LA.data(), p.in, 0.0f, H.data(), r);
      sgemm(false, true, T, p.out, r, 2.0f, H.data(), r, LB.data(), r, 1.0f, Y.data(), p.out);
      sgemm(false, false, T, r, p.out, 2.0f, dY.data(), p.out, LB.data(), r, 0.0f, dU.data(), r);
      sgemm(true, false, p.out, r, T, 2.0f, dY.data(), p.out, H.data(), r, 1.0f, gB.data(), r);
      sgemm(true, false, r, p.in, T, 1.0f, dU.data(), r, X.data(), p.in, 1.0f, gA.data(), p.in);
      sgemm(false, false, T, p.in, r, 1.0f, dU.data(), r, LA.data(), p.in, 1.0f, dX.data(), p.in);
    }
  });
  std::printf("    layer LoRA products (42)   %8.2f ms %5.1f%% of peak\n", lora.seconds * 1e3, 100.0 * lora.efficiency);
}
