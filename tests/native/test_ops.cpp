// Transformer ops (kernels/ops.h): every optimized op against its scalar
// reference on odd sizes, and every backward against central finite
// differences of a double-precision forward written here, on the scalar loss
// L = Σ out ⊙ R with a fixed random R. The optimized path is whatever
// LORA_STUDIO_ISA selects, so running the file once per ISA covers them all.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "common/dtype.h"
#include "common/threads.h"
#include "kernels/ops.h"

using namespace ls;
using lstest::random_vector;

namespace {

std::string tag(std::initializer_list<int64_t> v) {
  std::string s;
  for (int64_t x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

// Central difference of f at coordinate i of x (double), step h.
template <class F>
double central_difference(std::vector<double>& x, size_t i, double h, F&& f) {
  const double keep = x[i];
  x[i] = keep + h;
  const double up = f();
  x[i] = keep - h;
  const double down = f();
  x[i] = keep;
  return (up - down) / (2 * h);
}

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// |analytic - numeric| <= atol + rtol·|numeric| for each checked coordinate.
void check_gradient(const char* what, const std::vector<float>& analytic,
                    const std::vector<double>& numeric, const std::vector<size_t>& coords,
                    double atol, double rtol) {
  int bad = 0;
  for (size_t i : coords) {
    const double d = std::fabs(double(analytic[i]) - numeric[i]);
    if (d > atol + rtol * std::fabs(numeric[i]) && bad++ < 3)
      CHECK_MSG(false, std::string(what) + "[" + std::to_string(i) + "]: analytic " +
                           std::to_string(analytic[i]) + " numeric " + std::to_string(numeric[i]));
  }
}

std::vector<size_t> all_coords(size_t n) {
  std::vector<size_t> c(n);
  for (size_t i = 0; i < n; ++i) c[i] = i;
  return c;
}

// Up to `count` coordinates spread over [0, n).
std::vector<size_t> some_coords(size_t n, size_t count, uint32_t seed) {
  if (n <= count) return all_coords(n);
  std::mt19937 rng(seed);
  std::vector<size_t> c(count);
  for (auto& i : c) i = size_t(rng() % n);
  return c;
}

}  // namespace

// ============================================================================
// RMSNorm
// ============================================================================

TEST(ops_rmsnorm_matches_reference) {
  const int64_t shapes[][2] = {{1, 1}, {3, 7}, {63, 64}, {65, 129}, {1000, 33}, {5, 4096}};
  for (auto& sh : shapes) {
    const int64_t rows = sh[0], dim = sh[1];
    const size_t n = size_t(rows * dim);
    auto x = random_vector(n, 1, -2.f, 2.f), w = random_vector(static_cast<size_t>(dim), 2, 0.5f, 1.5f);
    auto dy = random_vector(n, 3);
    std::vector<float> y(n), yr(n), rs(static_cast<size_t>(rows)), rsr(static_cast<size_t>(rows));
    rmsnorm_forward(x.data(), w.data(), rows, dim, 1e-6f, y.data(), rs.data());
    rmsnorm_forward_reference(x.data(), w.data(), rows, dim, 1e-6f, yr.data(), rsr.data());
    CHECK_CLOSE(y.data(), yr.data(), n, 1e-6, 1e-5);
    CHECK_CLOSE(rs.data(), rsr.data(), size_t(rows), 0, 1e-5);
    // y may alias x.
    std::vector<float> xa = x;
    rmsnorm_forward(xa.data(), w.data(), rows, dim, 1e-6f, xa.data(), rs.data());
    CHECK_CLOSE(xa.data(), yr.data(), n, 1e-6, 1e-5);

    std::vector<float> dx(n, 0.f), dxr(n, 0.f);
    rmsnorm_backward(x.data(), w.data(), rsr.data(), dy.data(), rows, dim, dx.data(), false);
    rmsnorm_backward_reference(x.data(), w.data(), rsr.data(), dy.data(), rows, dim, dxr.data(),
                               false);
    CHECK_CLOSE(dx.data(), dxr.data(), n, 1e-5, 1e-4);
    std::vector<float> acc(n, 0.5f), accr(n, 0.5f);
    rmsnorm_backward(x.data(), w.data(), rsr.data(), dy.data(), rows, dim, acc.data(), true);
    rmsnorm_backward_reference(x.data(), w.data(), rsr.data(), dy.data(), rows, dim, accr.data(),
                               true);
    CHECK_CLOSE(acc.data(), accr.data(), n, 1e-5, 1e-4);
  }
}

TEST(ops_rmsnorm_matches_hf_formula) {
  // y = w · (x · rsqrt(mean(x²) + eps)) with mean over the row, in fp32.
  const float x[4] = {1.f, -2.f, 3.f, 0.5f}, w[4] = {1.f, 0.5f, 2.f, -1.f};
  float y[4], rs;
  rmsnorm_forward(x, w, 1, 4, 1e-5f, y, &rs);
  const double r = 1.0 / std::sqrt((1 + 4 + 9 + 0.25) / 4.0 + 1e-5);
  CHECK(std::fabs(rs - r) < 1e-6);
  for (int i = 0; i < 4; ++i) CHECK(std::fabs(y[i] - w[i] * x[i] * r) < 1e-6);
}

TEST(ops_rmsnorm_backward_finite_difference) {
  const int64_t rows = 3, dim = 9;
  const float eps = 1e-5f;
  auto x = random_vector(static_cast<size_t>(rows * dim), 11, -1.5f, 1.5f);
  auto w = random_vector(static_cast<size_t>(dim), 12, 0.5f, 1.5f), R = random_vector(x.size(), 13);
  std::vector<float> y(x.size()), rs(static_cast<size_t>(rows)), dx(x.size());
  rmsnorm_forward(x.data(), w.data(), rows, dim, eps, y.data(), rs.data());
  rmsnorm_backward(x.data(), w.data(), rs.data(), R.data(), rows, dim, dx.data(), false);
  std::vector<double> xd = to_double(x), num(x.size());
  auto loss = [&] {
    double L = 0;
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < dim; ++i) ss += xd[r * dim + i] * xd[r * dim + i];
      const double inv = 1.0 / std::sqrt(ss / dim + eps);
      for (int64_t i = 0; i < dim; ++i) L += w[i] * xd[r * dim + i] * inv * R[r * dim + i];
    }
    return L;
  };
  for (size_t i = 0; i < x.size(); ++i) num[i] = central_difference(xd, i, 1e-4, loss);
  check_gradient("rmsnorm dx", dx, num, all_coords(x.size()), 1e-5, 1e-4);
}

// ============================================================================
// RoPE
// ============================================================================

namespace {
std::vector<float> inv_freq_for(int64_t head_dim, double theta) {
  std::vector<float> f(static_cast<size_t>(head_dim / 2));
  for (int64_t i = 0; i < head_dim / 2; ++i)
    f[size_t(i)] = float(1.0 / std::pow(theta, double(2 * i) / double(head_dim)));
  return f;
}
}  // namespace

TEST(ops_rope_matches_reference_and_inverts) {
  const int64_t cases[][3] = {{1, 1, 8}, {3, 4, 12}, {63, 2, 64}, {65, 3, 80}, {1000, 1, 128}};
  for (auto& c : cases) {
    const int64_t rows = c[0], heads = c[1], hd = c[2];
    const size_t n = size_t(rows * heads * hd);
    const auto inv = inv_freq_for(hd, 10000.0);
    // Positions repeating per sequence (table path) and spread out (per-row path).
    for (int spread = 0; spread < 2; ++spread) {
      std::vector<int32_t> pos(static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) pos[size_t(r)] = spread ? int32_t(r * 977 + 5) : int32_t(r % 37);
      auto x = random_vector(n, 21);
      std::vector<float> a = x, b = x;
      rope_forward(a.data(), rows, heads, hd, pos.data(), inv.data());
      rope_forward_reference(b.data(), rows, heads, hd, pos.data(), inv.data());
      CHECK_CLOSE(a.data(), b.data(), n, 0, 0);  // same fp32 operations: bit-identical
      rope_backward(a.data(), rows, heads, hd, pos.data(), inv.data());
      CHECK_CLOSE(a.data(), x.data(), n, 1e-5, 1e-5);
    }
  }
}

TEST(ops_rope_known_value) {
  // Head dim 4, position 3: pairs (0,2) and (1,3) rotate by 3·inv_freq[i].
  const float inv[2] = {1.f, 0.01f};
  const int32_t pos = 3;
  float x[4] = {1.f, 2.f, 3.f, 4.f};
  rope_forward(x, 1, 1, 4, &pos, inv);
  const double c0 = std::cos(3.0), s0 = std::sin(3.0), c1 = std::cos(0.03f * 1.0), s1 = std::sin(double(3.f * 0.01f));
  CHECK(std::fabs(x[0] - (1 * c0 - 3 * s0)) < 1e-6);
  CHECK(std::fabs(x[2] - (3 * c0 + 1 * s0)) < 1e-6);
  CHECK(std::fabs(x[1] - (2 * c1 - 4 * s1)) < 1e-5);
  CHECK(std::fabs(x[3] - (4 * c1 + 2 * s1)) < 1e-5);
}

TEST(ops_rope_backward_finite_difference) {
  const int64_t rows = 4, heads = 2, hd = 8;
  const size_t n = size_t(rows * heads * hd);
  const auto inv = inv_freq_for(hd, 500.0);
  const std::vector<int32_t> pos = {0, 1, 7, 300};
  auto x = random_vector(n, 31), R = random_vector(n, 32);
  std::vector<float> dx = R;
  rope_backward(dx.data(), rows, heads, hd, pos.data(), inv.data());
  std::vector<double> xd = to_double(x), num(n);
  auto loss = [&] {
    double L = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < hd / 2; ++i) {
          const double ang = double(float(pos[size_t(r)]) * inv[size_t(i)]);
          const size_t o = size_t((r * heads + h) * hd);
          const double a = xd[o + i], b = xd[o + i + hd / 2];
          L += (a * std::cos(ang) - b * std::sin(ang)) * R[o + i] +
               (b * std::cos(ang) + a * std::sin(ang)) * R[o + i + hd / 2];
        }
    return L;
  };
  for (size_t i = 0; i < n; ++i) num[i] = central_difference(xd, i, 1e-3, loss);
  check_gradient("rope dx", dx, num, all_coords(n), 1e-5, 1e-4);
}

// ============================================================================
// Attention
// ============================================================================

namespace {

struct AttnCase {
  int64_t B, T, H, KV, Hd, q_off;
  bool strided;
  int segments;  // 0 none; 1 three examples with distinct ids; 2 ids 1,2,1 (not contiguous)
};

// Buffers for one case: strides padded when `strided`, KV cache capacity
// beyond kv_len, segments of three packed examples per sequence.
struct AttnData {
  AttentionShape s;
  std::vector<float> q, k, v, dout;
  std::vector<int32_t> seg;
  AttnData(const AttnCase& c, uint32_t seed) {
    s.batch = c.B; s.q_len = c.T; s.kv_len = c.q_off + c.T; s.heads = c.H; s.kv_heads = c.KV;
    s.head_dim = c.Hd; s.q_offset = c.q_off; s.scale = 1.f / std::sqrt(float(c.Hd));
    const int64_t pad = c.strided ? 5 : 0;
    s.q_stride = c.H * c.Hd + pad;
    s.out_stride = c.H * c.Hd + 2 * pad;
    s.kv_stride = c.KV * c.Hd + pad;
    s.kv_batch_stride = (s.kv_len + (c.strided ? 7 : 0)) * s.kv_stride;
    q = random_vector(static_cast<size_t>(c.B * c.T * s.q_stride), seed, -2.f, 2.f);
    k = random_vector(static_cast<size_t>(c.B * s.kv_batch_stride), seed + 1, -2.f, 2.f);
    v = random_vector(static_cast<size_t>(c.B * s.kv_batch_stride), seed + 2);
    dout = random_vector(static_cast<size_t>(c.B * c.T * s.out_stride), seed + 3);
    if (c.segments) {
      seg.resize(static_cast<size_t>(c.B * c.T));
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t t = 0; t < c.T; ++t)  // three examples: [0, T/3), [T/3, T/2), [T/2, T)
          seg[size_t(b * c.T + t)] = int32_t(t < c.T / 3 ? 10 + b : t < c.T / 2 ? 20 : 5);
    }
  }
  const int32_t* segp() const { return seg.empty() ? nullptr : seg.data(); }
  size_t out_size() const { return size_t(s.batch * s.q_len * s.out_stride); }
  size_t lse_size() const { return size_t(s.batch * s.heads * s.q_len); }
};

// Compares only the elements a layout actually uses (padding is left alone).
void check_rows(const char* what, const std::vector<float>& got, const std::vector<float>& want,
                int64_t rows, int64_t stride, int64_t width, double atol, double rtol) {
  for (int64_t r = 0; r < rows; ++r) {
    std::string why;
    if (!lstest::all_close(got.data() + r * stride, want.data() + r * stride, size_t(width), atol,
                           rtol, &why)) {
      CHECK_MSG(false, std::string(what) + " row " + std::to_string(r) + ": " + why);
      return;
    }
  }
}

void check_attention_case(const AttnCase& c, bool backward) {
  AttnData d(c, uint32_t(100 + c.T + c.Hd));
  const AttentionShape& s = d.s;
  std::vector<float> out(d.out_size(), 7.f), outr(d.out_size(), 7.f);
  std::vector<float> lse(d.lse_size()), lser(d.lse_size());
  attention_forward(s, d.q.data(), d.k.data(), d.v.data(), d.segp(), out.data(), lse.data());
  attention_forward_reference(s, d.q.data(), d.k.data(), d.v.data(), d.segp(), outr.data(),
                              lser.data());
  const std::string name = "case " + tag({c.B, c.T, c.H, c.KV, c.Hd, c.q_off, c.strided, c.segments});
  CHECK_MSG(!std::isnan(out[0]), name);
  check_rows(("out " + name).c_str(), out, outr, c.B * c.T, s.out_stride, c.H * c.Hd, 2e-6, 2e-5);
  CHECK_CLOSE(lse.data(), lser.data(), lse.size(), 1e-5, 1e-5);
  if (!backward) return;
  const size_t qn = d.q.size(), kn = d.k.size();
  std::vector<float> dq(qn), dk(kn), dv(kn), dqr(qn), dkr(kn), dvr(kn);
  attention_backward(s, d.q.data(), d.k.data(), d.v.data(), d.segp(), outr.data(), lser.data(),
                     d.dout.data(), dq.data(), dk.data(), dv.data());
  attention_backward_reference(s, d.q.data(), d.k.data(), d.v.data(), d.segp(), outr.data(),
                               lser.data(), d.dout.data(), dqr.data(), dkr.data(), dvr.data());
  check_rows(("dq " + name).c_str(), dq, dqr, c.B * c.T, s.q_stride, c.H * c.Hd, 1e-5, 1e-4);
  for (int64_t b = 0; b < c.B; ++b) {
    const int64_t o = b * s.kv_batch_stride;
    std::vector<float> a(dk.begin() + o, dk.begin() + o + s.kv_len * s.kv_stride);
    std::vector<float> ar(dkr.begin() + o, dkr.begin() + o + s.kv_len * s.kv_stride);
    check_rows(("dk " + name).c_str(), a, ar, s.kv_len, s.kv_stride, c.KV * c.Hd, 1e-5, 1e-4);
    a.assign(dv.begin() + o, dv.begin() + o + s.kv_len * s.kv_stride);
    ar.assign(dvr.begin() + o, dvr.begin() + o + s.kv_len * s.kv_stride);
    check_rows(("dv " + name).c_str(), a, ar, s.kv_len, s.kv_stride, c.KV * c.Hd, 1e-5, 1e-4);
  }
}

}  // namespace

TEST(ops_attention_matches_reference_training) {
  const AttnCase cases[] = {
      {1, 1, 4, 4, 8, 0, false, 0},   {2, 3, 4, 2, 12, 0, false, 0},
      {1, 63, 6, 1, 64, 0, false, 0}, {2, 65, 4, 2, 80, 0, true, 0},
      {1, 33, 4, 4, 128, 0, false, 0}, {2, 61, 6, 1, 12, 0, false, 1},
      {1, 130, 4, 2, 64, 0, true, 1},  {1, 200, 2, 1, 16, 0, false, 0},
      {2, 45, 4, 2, 16, 0, false, 2},
  };
  for (const auto& c : cases) check_attention_case(c, true);
}

TEST(ops_attention_matches_reference_kv_cache) {
  // q_len new tokens after q_offset cached ones, in a strided KV cache.
  const AttnCase cases[] = {
      {1, 1, 4, 4, 8, 5, true, 0},    {2, 1, 6, 1, 64, 37, true, 0},
      {2, 3, 4, 2, 12, 20, true, 0},  {1, 17, 4, 2, 80, 63, true, 0},
      {1, 65, 4, 1, 128, 100, true, 0}, {3, 2, 4, 2, 64, 300, false, 0},
      {1, 4, 4, 2, 16, 126, true, 0},  // last key chunk unseen by the first new token
      {2, 4, 8, 8, 64, 700, false, 0},
  };
  for (const auto& c : cases) check_attention_case(c, false);
}

TEST(ops_attention_segments_isolate_examples) {
  // Changing keys/values of the first packed example leaves the others' outputs alone.
  AttnCase c{1, 24, 4, 2, 8, 0, false, 1};
  AttnData d(c, 7);
  std::vector<float> out1(d.out_size()), out2(d.out_size()), lse(d.lse_size());
  attention_forward(d.s, d.q.data(), d.k.data(), d.v.data(), d.segp(), out1.data(), lse.data());
  for (int64_t t = 0; t < c.T / 3; ++t)
    for (int64_t i = 0; i < c.KV * c.Hd; ++i) {
      d.k[size_t(t * d.s.kv_stride + i)] += 1.f;
      d.v[size_t(t * d.s.kv_stride + i)] -= 1.f;
    }
  attention_forward(d.s, d.q.data(), d.k.data(), d.v.data(), d.segp(), out2.data(), lse.data());
  bool first_changed = false, rest_same = true;
  for (int64_t t = 0; t < c.T; ++t)
    for (int64_t i = 0; i < c.H * c.Hd; ++i) {
      const size_t o = size_t(t * d.s.out_stride + i);
      if (t < c.T / 3) first_changed |= out1[o] != out2[o];
      else rest_same &= out1[o] == out2[o];
    }
  CHECK(first_changed);
  CHECK(rest_same);
  // The first token of each example sees only itself: out = its own v.
  for (int64_t t : {int64_t(0), c.T / 3, c.T / 2})
    for (int64_t h = 0; h < c.H; ++h)
      for (int64_t i = 0; i < c.Hd; ++i) {
        const float want = d.v[size_t(t * d.s.kv_stride + (h / 2) * c.Hd + i)];
        CHECK(std::fabs(out2[size_t(t * d.s.out_stride + h * c.Hd + i)] - want) < 1e-6);
      }
}

TEST(ops_attention_is_deterministic) {
  AttnCase c{2, 70, 4, 2, 64, 0, false, 1};
  AttnData d(c, 9);
  std::vector<float> out(d.out_size()), lse(d.lse_size());
  attention_forward(d.s, d.q.data(), d.k.data(), d.v.data(), d.segp(), out.data(), lse.data());
  std::vector<float> g1[3], g2[3];
  for (auto* g : {g1, g2}) {
    g[0].assign(d.q.size(), 0.f);
    g[1].assign(d.k.size(), 0.f);
    g[2].assign(d.k.size(), 0.f);
    attention_backward(d.s, d.q.data(), d.k.data(), d.v.data(), d.segp(), out.data(), lse.data(),
                       d.dout.data(), g[0].data(), g[1].data(), g[2].data());
  }
  for (int i = 0; i < 3; ++i) CHECK(g1[i] == g2[i]);
}

TEST(ops_attention_does_not_depend_on_thread_count) {
  const AttnCase cases[] = {{2, 70, 4, 2, 64, 0, false, 1},  // training, segments
                            {1, 33, 3, 3, 16, 0, false, 0},  // MHA, odd tail block
                            {2, 3, 8, 2, 64, 600, true, 0}};  // generation, several key chunks
  const int saved = num_threads();
  for (const auto& c : cases) {
    AttnData d(c, 17);
    std::vector<float> out[2], lse[2], grads[2][3];
    for (int run = 0; run < 2; ++run) {
      set_num_threads(run == 0 ? 1 : 3);
      out[run].assign(d.out_size(), 0.f);
      lse[run].assign(d.lse_size(), 0.f);
      attention_forward(d.s, d.q.data(), d.k.data(), d.v.data(), d.segp(), out[run].data(),
                        lse[run].data());
      if (c.q_off) continue;
      for (auto& g : grads[run]) g.assign(std::max(d.q.size(), d.k.size()), 0.f);
      attention_backward(d.s, d.q.data(), d.k.data(), d.v.data(), d.segp(), out[0].data(),
                         lse[0].data(), d.dout.data(), grads[run][0].data(), grads[run][1].data(),
                         grads[run][2].data());
    }
    const std::string name = tag({c.B, c.T, c.H, c.KV, c.Hd, c.q_off});
    CHECK_MSG(out[0] == out[1] && lse[0] == lse[1], "forward " + name);
    for (int i = 0; i < 3; ++i) CHECK_MSG(grads[0][i] == grads[1][i], "backward " + name);
  }
  set_num_threads(saved);
}

namespace {

// Double-precision causal GQA attention (contiguous layout) for finite differences.
double attention_loss_double(const AttentionShape& s, const std::vector<double>& q,
                             const std::vector<double>& k, const std::vector<double>& v,
                             const int32_t* seg, const std::vector<float>& R) {
  const int64_t T = s.q_len, S = s.kv_len, H = s.heads, KV = s.kv_heads, Hd = s.head_dim;
  const int64_t group = H / KV;
  double L = 0;
  std::vector<double> p(static_cast<size_t>(S));
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        const int64_t g = h / group;
        double m = -1e300;
        for (int64_t j = 0; j < S; ++j) {
          p[size_t(j)] = -1e300;
          if (j > s.q_offset + t) continue;
          if (seg && seg[b * T + j] != seg[b * T + t]) continue;
          double dot = 0;
          for (int64_t i = 0; i < Hd; ++i)
            dot += q[size_t((b * T + t) * H * Hd + h * Hd + i)] * k[size_t((b * S + j) * KV * Hd + g * Hd + i)];
          p[size_t(j)] = dot * s.scale;
          m = std::max(m, p[size_t(j)]);
        }
        double sum = 0;
        for (int64_t j = 0; j < S; ++j) sum += p[size_t(j)] > -1e299 ? std::exp(p[size_t(j)] - m) : 0;
        for (int64_t i = 0; i < Hd; ++i) {
          double o = 0;
          for (int64_t j = 0; j < S; ++j)
            if (p[size_t(j)] > -1e299)
              o += std::exp(p[size_t(j)] - m) / sum * v[size_t((b * S + j) * KV * Hd + g * Hd + i)];
          L += o * R[size_t((b * T + t) * H * Hd + h * Hd + i)];
        }
      }
  return L;
}

// segments: 0 none; 1 three examples; 2 ids 0,1,0 (the last example shares the first's id).
void attention_fd_case(int64_t B, int64_t T, int64_t H, int64_t KV, int64_t Hd, int segments) {
  AttentionShape s;
  s.batch = B; s.q_len = T; s.kv_len = T; s.heads = H; s.kv_heads = KV; s.head_dim = Hd;
  s.scale = 1.f / std::sqrt(float(Hd));
  auto q = random_vector(static_cast<size_t>(B * T * H * Hd), 41, -1.5f, 1.5f);
  auto k = random_vector(static_cast<size_t>(B * T * KV * Hd), 42, -1.5f, 1.5f);
  auto v = random_vector(static_cast<size_t>(B * T * KV * Hd), 43);
  auto R = random_vector(q.size(), 44);
  std::vector<int32_t> seg;
  if (segments)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) seg.push_back(int32_t(t < 3 ? 0 : t < T - 2 ? 1 : segments == 2 ? 0 : 2));
  const int32_t* sp = segments ? seg.data() : nullptr;
  std::vector<float> out(q.size()), lse(static_cast<size_t>(B * H * T)), dq(q.size()), dk(k.size()), dv(k.size());
  attention_forward(s, q.data(), k.data(), v.data(), sp, out.data(), lse.data());
  attention_backward(s, q.data(), k.data(), v.data(), sp, out.data(), lse.data(), R.data(),
                     dq.data(), dk.data(), dv.data());
  std::vector<double> qd = to_double(q), kd = to_double(k), vd = to_double(v);
  auto loss = [&] { return attention_loss_double(s, qd, kd, vd, sp, R); };
  const double h = 1e-3;
  struct { const char* name; std::vector<double>* x; std::vector<float>* g; } parts[] = {
      {"dq", &qd, &dq}, {"dk", &kd, &dk}, {"dv", &vd, &dv}};
  for (auto& part : parts) {
    const auto coords = some_coords(part.x->size(), 80, 45);
    std::vector<double> num(part.x->size(), 0.0);
    for (size_t i : coords) num[i] = central_difference(*part.x, i, h, loss);
    check_gradient((std::string(part.name) + " " + tag({B, T, H, KV, Hd, segments})).c_str(),
                   *part.g, num, coords, 2e-5, 1e-3);
  }
}

}  // namespace

TEST(ops_attention_backward_finite_difference) {
  attention_fd_case(1, 6, 2, 2, 8, 0);   // MHA
  attention_fd_case(2, 7, 4, 2, 12, 0);  // GQA, odd head dim
  attention_fd_case(1, 9, 6, 1, 8, 1);   // MQA with packed segments
  attention_fd_case(2, 9, 4, 2, 8, 2);   // GQA, a segment id that recurs
}

// ============================================================================
// SwiGLU
// ============================================================================

TEST(ops_swiglu_matches_reference) {
  for (int64_t n : {int64_t(1), int64_t(3), int64_t(63), int64_t(65), int64_t(1000), int64_t(70001)}) {
    auto g = random_vector(static_cast<size_t>(n), 51, -12.f, 12.f), u = random_vector(static_cast<size_t>(n), 52, -3.f, 3.f);
    auto da = random_vector(static_cast<size_t>(n), 53);
    if (n >= 8) {  // saturating inputs
      g[0] = 100.f; g[1] = -100.f; g[2] = 88.5f; g[3] = -88.5f; g[4] = -87.5f; g[5] = 0.f;
    }
    std::vector<float> a(static_cast<size_t>(n)), ar(static_cast<size_t>(n)), dg(static_cast<size_t>(n)), du(static_cast<size_t>(n)), dgr(static_cast<size_t>(n)), dur(static_cast<size_t>(n));
    swiglu_forward(g.data(), u.data(), n, a.data());
    swiglu_forward_reference(g.data(), u.data(), n, ar.data());
    CHECK_CLOSE(a.data(), ar.data(), size_t(n), 1e-6, 1e-5);
    swiglu_backward(g.data(), u.data(), da.data(), n, dg.data(), du.data());
    swiglu_backward_reference(g.data(), u.data(), da.data(), n, dgr.data(), dur.data());
    CHECK_CLOSE(dg.data(), dgr.data(), size_t(n), 1e-6, 1e-5);
    CHECK_CLOSE(du.data(), dur.data(), size_t(n), 1e-6, 1e-5);
  }
}

TEST(ops_swiglu_backward_finite_difference) {
  const int64_t n = 40;
  auto g = random_vector(static_cast<size_t>(n), 61, -6.f, 6.f), u = random_vector(static_cast<size_t>(n), 62, -2.f, 2.f);
  auto R = random_vector(static_cast<size_t>(n), 63);
  std::vector<float> dg(static_cast<size_t>(n)), du(static_cast<size_t>(n));
  swiglu_backward(g.data(), u.data(), R.data(), n, dg.data(), du.data());
  std::vector<double> gd = to_double(g), ud = to_double(u), ng(static_cast<size_t>(n)), nu(static_cast<size_t>(n));
  auto loss = [&] {
    double L = 0;
    for (int64_t i = 0; i < n; ++i) L += gd[size_t(i)] / (1 + std::exp(-gd[size_t(i)])) * ud[size_t(i)] * R[size_t(i)];
    return L;
  };
  for (size_t i = 0; i < size_t(n); ++i) {
    ng[i] = central_difference(gd, i, 1e-4, loss);
    nu[i] = central_difference(ud, i, 1e-4, loss);
  }
  check_gradient("swiglu dg", dg, ng, all_coords(static_cast<size_t>(n)), 1e-5, 1e-4);
  check_gradient("swiglu du", du, nu, all_coords(static_cast<size_t>(n)), 1e-5, 1e-4);
}

// ============================================================================
// Cross-entropy
// ============================================================================

TEST(ops_cross_entropy_matches_reference) {
  const int64_t shapes[][2] = {{1, 1}, {3, 3}, {63, 65}, {65, 1000}, {2, 152064}};
  for (auto& sh : shapes) {
    const int64_t rows = sh[0], V = sh[1];
    auto logits = random_vector(static_cast<size_t>(rows * V), 71, -8.f, 8.f);
    std::vector<int32_t> tg(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) tg[size_t(r)] = (r % 4 == 2) ? -100 : int32_t((r * 7919) % V);
    for (int want_grad = 0; want_grad < 2; ++want_grad) {
      std::vector<float> a = logits, b = logits;
      const double la = cross_entropy(a.data(), tg.data(), rows, V, 0.25f, want_grad);
      const double lb = cross_entropy_reference(b.data(), tg.data(), rows, V, 0.25f, want_grad);
      CHECK_MSG(std::fabs(la - lb) <= 1e-5 * std::max(1.0, std::fabs(lb)),
                "loss " + tag({rows, V}) + ": " + std::to_string(la) + " vs " + std::to_string(lb));
      CHECK_CLOSE(a.data(), b.data(), a.size(), 1e-8, 1e-5);
    }
  }
}

TEST(ops_cross_entropy_known_values) {
  // Uniform logits over V: loss log V per row; ignored rows contribute 0 and get zero gradient.
  const int64_t V = 5;
  std::vector<float> x(3 * V, 2.f);
  const int32_t tg[3] = {1, -100, 4};
  const double loss = cross_entropy(x.data(), tg, 3, V, 1.f, true);
  CHECK(std::fabs(loss - 2 * std::log(5.0)) < 1e-6);
  CHECK(std::fabs(x[1] - (0.2f - 1.f)) < 1e-6 && std::fabs(x[0] - 0.2f) < 1e-6);
  for (int64_t j = 0; j < V; ++j) CHECK(x[size_t(V + j)] == 0.f);
  // Large logits stay finite (max subtraction).
  float big[3] = {1000.f, 1001.f, 999.f};
  const int32_t t1 = 1;
  const double lb = cross_entropy(big, &t1, 1, 3, 1.f, false);
  CHECK(std::fabs(lb - (std::log(std::exp(-1.0) + 1 + std::exp(-2.0)))) < 1e-5);
}

TEST(ops_cross_entropy_gradient_finite_difference) {
  const int64_t rows = 3, V = 11;
  auto x = random_vector(static_cast<size_t>(rows * V), 81, -3.f, 3.f);
  const int32_t tg[rows] = {4, -100, 10};
  std::vector<float> g = x;
  const float scale = 0.5f;
  cross_entropy(g.data(), tg, rows, V, scale, true);
  std::vector<double> xd = to_double(x), num(x.size());
  auto loss = [&] {
    double L = 0;
    for (int64_t r = 0; r < rows; ++r) {
      if (tg[r] < 0) continue;
      double m = -1e300, s = 0;
      for (int64_t j = 0; j < V; ++j) m = std::max(m, xd[size_t(r * V + j)]);
      for (int64_t j = 0; j < V; ++j) s += std::exp(xd[size_t(r * V + j)] - m);
      L += m + std::log(s) - xd[size_t(r * V + tg[r])];
    }
    return scale * L;
  };
  for (size_t i = 0; i < x.size(); ++i) num[i] = central_difference(xd, i, 1e-4, loss);
  check_gradient("cross_entropy dlogits", g, num, all_coords(x.size()), 1e-6, 1e-4);
}

// ============================================================================
// Embedding
// ============================================================================

TEST(ops_embedding_f32_and_bf16) {
  const int64_t vocab = 37, dim = 67, rows = 65;
  auto table = random_vector(static_cast<size_t>(vocab * dim), 91);
  std::vector<uint16_t> table16(table.size());
  for (size_t i = 0; i < table.size(); ++i) table16[i] = f32_to_bf16(table[i]);
  std::vector<int32_t> ids(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) ids[size_t(r)] = int32_t((r * 13 + 5) % vocab);
  std::vector<float> out(static_cast<size_t>(rows * dim)), out16(static_cast<size_t>(rows * dim));
  embedding_forward(DType::F32, table.data(), dim, ids.data(), rows, out.data());
  embedding_forward(DType::BF16, table16.data(), dim, ids.data(), rows, out16.data());
  bool ok = true;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < dim; ++i) {
      const size_t src = size_t(ids[size_t(r)] * dim + i), dst = size_t(r * dim + i);
      ok &= out[dst] == table[src] && out16[dst] == bf16_to_f32(table16[src]);
    }
  CHECK(ok);
}

// ============================================================================
// AdamW and sum of squares
// ============================================================================

TEST(ops_adamw_matches_torch_formulas) {
  // Five steps by hand in double, following torch.optim.AdamW (single tensor):
  //   p *= 1 - lr·wd; m = lerp(m, g', 1-β1); v = β2 v + (1-β2) g'²;
  //   p -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + eps)
  const int64_t n = 37;
  AdamWParams a;
  a.lr = 1e-2f; a.beta1 = 0.9f; a.beta2 = 0.99f; a.eps = 1e-6f; a.weight_decay = 0.1f;
  auto p = random_vector(static_cast<size_t>(n), 101), m = std::vector<float>(static_cast<size_t>(n), 0.f), v = m;
  std::vector<float> pr = p, mr = m, vr = v;
  std::vector<double> pd = to_double(p), md(static_cast<size_t>(n), 0.0), vd(static_cast<size_t>(n), 0.0);
  for (int64_t step = 1; step <= 5; ++step) {
    auto g = random_vector(static_cast<size_t>(n), uint32_t(200 + step), -3.f, 3.f);
    a.step = step;
    a.grad_scale = step == 3 ? 0.25f : 1.f;  // a clipped step
    adamw_step(p.data(), g.data(), m.data(), v.data(), n, a);
    adamw_step_reference(pr.data(), g.data(), mr.data(), vr.data(), n, a);
    const double lr = a.lr, b1 = a.beta1, b2 = a.beta2;
    for (int64_t i = 0; i < n; ++i) {
      const double gi = double(g[size_t(i)]) * a.grad_scale;
      pd[size_t(i)] *= 1 - lr * a.weight_decay;
      md[size_t(i)] = b1 * md[size_t(i)] + (1 - b1) * gi;
      vd[size_t(i)] = b2 * vd[size_t(i)] + (1 - b2) * gi * gi;
      const double denom = std::sqrt(vd[size_t(i)]) / std::sqrt(1 - std::pow(b2, double(step))) + a.eps;
      pd[size_t(i)] -= lr / (1 - std::pow(b1, double(step))) * md[size_t(i)] / denom;
    }
    CHECK_CLOSE(p.data(), pr.data(), size_t(n), 1e-7, 1e-6);
    CHECK_CLOSE(m.data(), mr.data(), size_t(n), 1e-7, 1e-6);
    CHECK_CLOSE(v.data(), vr.data(), size_t(n), 1e-9, 1e-6);
  }
  std::vector<float> pdf(pd.begin(), pd.end()), mdf(md.begin(), md.end()), vdf(vd.begin(), vd.end());
  CHECK_CLOSE(p.data(), pdf.data(), size_t(n), 1e-6, 1e-5);
  CHECK_CLOSE(m.data(), mdf.data(), size_t(n), 1e-6, 1e-5);
  CHECK_CLOSE(v.data(), vdf.data(), size_t(n), 1e-8, 1e-5);
}

TEST(ops_adamw_matches_torch_bitwise) {
  // Golden values from torch 2.15 (CPU) torch.optim.AdamW(lr=0.01, betas=(0.9, 0.95),
  // eps=1e-6, weight_decay=0.1, foreach=False), hyperparameters passed as the
  // Python floats of these fp32 values; three steps, the second gradient
  // multiplied by 0.5 (clipping).
  const float p0[8] = {0.5f, -1.25f, 2.0f, 0.0f, 3.0f, -0.75f, 1e-3f, -2.5f};
  const float grads[3][8] = {{0.1f, -0.2f, 0.3f, 0.05f, -0.4f, 0.0f, 1e-4f, 0.25f},
                             {-0.3f, 0.1f, 0.2f, -0.05f, 0.4f, 0.6f, -1e-4f, 0.125f},
                             {0.2f, 0.2f, -0.1f, 0.5f, 0.0f, -0.6f, 2e-4f, -0.5f}};
  const float want_p[8] = {0x1.f34198p-2f, -0x1.3bbea0p+0f, 0x1.f87d2cp+0f, -0x1.389ecep-6f,
                           0x1.80bd1ep+1f, -0x1.8107e0p-1f, -0x1.266f94p-6f, -0x1.410c02p+1f};
  const float want_m[8] = {0x1.de69b2p-7f, 0x1.0ff976p-7f, 0x1.7dbf4cp-6f, 0x1.a85880p-5f,
                           -0x1.d7dbfcp-7f, -0x1.0e560ap-5f, 0x1.8bf140p-16f, -0x1.8b439cp-6f};
  const float want_v[8] = {0x1.cd5fa2p-9f, 0x1.01259ep-8f, 0x1.4a0e48p-8f, 0x1.9e4500p-7f,
                           0x1.2ad820p-7f, 0x1.6cf428p-6f, 0x1.6137dcp-29f, 0x1.fc189cp-7f};
  for (int ref = 0; ref < 2; ++ref) {
    float p[8], m[8] = {}, v[8] = {};
    std::memcpy(p, p0, sizeof p);
    AdamWParams a;
    a.lr = 0.01f; a.beta1 = 0.9f; a.beta2 = 0.95f; a.eps = 1e-6f; a.weight_decay = 0.1f;
    for (int step = 1; step <= 3; ++step) {
      a.step = step;
      a.grad_scale = step == 2 ? 0.5f : 1.f;
      if (ref) adamw_step_reference(p, grads[step - 1], m, v, 8, a);
      else adamw_step(p, grads[step - 1], m, v, 8, a);
    }
    CHECK_CLOSE(p, want_p, 8, 0, 0);
    CHECK_CLOSE(m, want_m, 8, 0, 0);
    CHECK_CLOSE(v, want_v, 8, 0, 0);
  }
}

TEST(ops_adamw_first_step_known_value) {
  // Step 1 without decay moves every parameter by lr·sign(g) (up to eps).
  AdamWParams a;
  a.lr = 0.1f;
  float p[3] = {1.f, 2.f, 3.f}, g[3] = {0.5f, -2.f, 1e-3f}, m[3] = {}, v[3] = {};
  adamw_step(p, g, m, v, 3, a);
  CHECK(std::fabs(p[0] - 0.9f) < 1e-6 && std::fabs(p[1] - 2.1f) < 1e-6);
  CHECK(std::fabs(p[2] - (3.f - 0.1f * 1e-3f / (1e-3f + 1e-8f))) < 1e-6);
}

TEST(ops_adamw_large_matches_reference) {
  const int64_t n = 100003;
  AdamWParams a;
  a.lr = 3e-4f; a.weight_decay = 0.01f; a.step = 7; a.grad_scale = 0.5f;
  auto p = random_vector(static_cast<size_t>(n), 111), g = random_vector(static_cast<size_t>(n), 112);
  auto m = random_vector(static_cast<size_t>(n), 113, -0.1f, 0.1f), v = random_vector(static_cast<size_t>(n), 114, 0.f, 0.01f);
  std::vector<float> pr = p, mr = m, vr = v;
  adamw_step(p.data(), g.data(), m.data(), v.data(), n, a);
  adamw_step_reference(pr.data(), g.data(), mr.data(), vr.data(), n, a);
  // Same fp32 operations in every ISA: identical bits.
  CHECK_CLOSE(p.data(), pr.data(), size_t(n), 0, 0);
  CHECK_CLOSE(m.data(), mr.data(), size_t(n), 0, 0);
  CHECK_CLOSE(v.data(), vr.data(), size_t(n), 0, 0);
}

TEST(ops_sum_squares) {
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(3), int64_t(65), int64_t(1000), int64_t(300007)}) {
    auto x = random_vector(static_cast<size_t>(n), 121, -2.f, 2.f);
    double want = 0;
    for (float f : x) want += double(f) * double(f);
    const double got = sum_squares(x.data(), n);
    CHECK_MSG(std::fabs(got - want) <= 1e-12 * std::max(1.0, want), "n=" + std::to_string(n));
    CHECK(sum_squares(x.data(), n) == got);  // deterministic
  }
}
