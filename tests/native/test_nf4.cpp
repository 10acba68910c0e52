// NF4 quantization against bitsandbytes' own output (tests/golden/nf4, written
// by scripts/golden/make_nf4_golden.py; no Python needed here): bit-exact
// packed bytes, absmax, nested codes, nested scales, offset and dequantized
// values; plus round-trip error bounds and nf4_nearest on every midpoint.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "check.h"
#include "common/dtype.h"
#include "kernels/gemm.h"
#include "kernels/nf4.h"

using namespace ls;

namespace {

bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// LS_REPO_ROOT if set, else the first folder at or above the working
// directory that has tests/golden.
std::string golden_dir() {
  if (const char* root = std::getenv("LS_REPO_ROOT")) return std::string(root) + "/tests/golden/nf4";
  std::string dir = ".";
  for (int up = 0; up < 12; ++up) {
    if (is_dir(dir + "/tests/golden")) return dir + "/tests/golden/nf4";
    dir += "/..";
  }
  return "tests/golden/nf4";
}

struct GoldenCase {
  std::string name;
  int64_t rows = 0, cols = 0;
  std::vector<float> input;
  std::vector<uint8_t> packed;
  std::vector<float> absmax;
  std::vector<uint8_t> absmax_q;
  std::vector<float> scale;
  float offset = 0.f;
  std::vector<float> absmax_recovered;
  std::vector<float> dequant;  // empty if not stored
};

struct Golden {
  bool ok = false;
  std::string error;
  float nf4_code[16];
  float dynamic_code[256];
  std::vector<GoldenCase> cases;
};

class Reader {
 public:
  explicit Reader(std::vector<uint8_t> bytes) : b_(std::move(bytes)) {}
  bool good() const { return good_; }
  void raw(void* dst, size_t n) {
    if (pos_ + n > b_.size()) { good_ = false; return; }
    std::memcpy(dst, b_.data() + pos_, n);
    pos_ += n;
  }
  template <class T> T get() { T v{}; raw(&v, sizeof v); return v; }
  template <class T> std::vector<T> vec(size_t n) {
    std::vector<T> v(good_ ? n : 0);
    if (n) raw(v.data(), n * sizeof(T));
    return v;
  }

 private:
  std::vector<uint8_t> b_;
  size_t pos_ = 0;
  bool good_ = true;
};

const Golden& golden() {
  static Golden g = [] {
    Golden g;
    const std::string path = golden_dir() + "/nf4_golden.bin";
    std::ifstream f(path, std::ios::binary);
    if (!f) { g.error = "cannot open " + path + " (set LS_REPO_ROOT)"; return g; }
    Reader r(std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {}));
    char magic[8];
    r.raw(magic, 8);
    if (!r.good() || std::memcmp(magic, "LSNF4GD1", 8) != 0) { g.error = "bad magic in " + path; return g; }
    const uint32_t count = r.get<uint32_t>();
    r.raw(g.nf4_code, sizeof g.nf4_code);
    r.raw(g.dynamic_code, sizeof g.dynamic_code);
    for (uint32_t c = 0; c < count && r.good(); ++c) {
      GoldenCase k;
      const uint32_t name_len = r.get<uint32_t>();
      std::vector<char> name = r.vec<char>(name_len);
      k.name.assign(name.begin(), name.end());
      k.rows = r.get<int64_t>();
      k.cols = r.get<int64_t>();
      const uint32_t kind = r.get<uint32_t>();
      const size_t n = size_t(k.rows * k.cols), nb = n / kNf4BlockSize;
      if (kind == 0) {
        k.input = r.vec<float>(n);
      } else {
        for (uint16_t h : r.vec<uint16_t>(n)) k.input.push_back(bf16_to_f32(h));
      }
      k.packed = r.vec<uint8_t>(n / 2);
      k.absmax = r.vec<float>(nb);
      k.absmax_q = r.vec<uint8_t>(nb);
      k.scale = r.vec<float>((nb + kNf4AbsmaxBlock - 1) / kNf4AbsmaxBlock);
      k.offset = r.get<float>();
      k.absmax_recovered = r.vec<float>(nb);
      if (r.get<uint32_t>()) k.dequant = r.vec<float>(n);
      g.cases.push_back(std::move(k));
    }
    if (!r.good() || g.cases.size() != count) { g.error = "truncated " + path; return g; }
    g.ok = true;
    return g;
  }();
  return g;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

// Number of positions where two arrays differ bit for bit.
template <class T>
size_t mismatches(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return std::max(a.size(), b.size());
  size_t bad = 0;
  for (size_t i = 0; i < a.size(); ++i) bad += std::memcmp(&a[i], &b[i], sizeof(T)) != 0;
  return bad;
}

std::string count_msg(const GoldenCase& k, const char* what, size_t bad, size_t total) {
  return k.name + ": " + what + " differs from bitsandbytes at " + std::to_string(bad) + " of " +
         std::to_string(total);
}

}  // namespace

TEST(nf4_golden_file_is_readable) {
  const Golden& g = golden();
  CHECK_MSG(g.ok, g.error);
  CHECK(g.cases.size() >= 7);
}

TEST(nf4_code_tables_match_bitsandbytes) {
  const Golden& g = golden();
  if (!g.ok) { CHECK_MSG(false, g.error); return; }
  for (int i = 0; i < 16; ++i) CHECK_MSG(same_bits(kNf4Code[i], g.nf4_code[i]), "kNf4Code[" + std::to_string(i) + "]");
  int bad = 0;
  for (int i = 0; i < 256; ++i) bad += !same_bits(kDynamicCode[i], g.dynamic_code[i]);
  CHECK_MSG(bad == 0, std::to_string(bad) + " kDynamicCode entries differ");
  CHECK(kDynamicCode[127] == 0.0f && kDynamicCode[255] == 1.0f && kDynamicCode[0] < -0.99f);
  for (int i = 0; i < 255; ++i) CHECK(kDynamicCode[i] < kDynamicCode[i + 1]);
}

TEST(nf4_quantize_matches_bitsandbytes_bit_exact) {
  const Golden& g = golden();
  if (!g.ok) { CHECK_MSG(false, g.error); return; }
  for (const GoldenCase& k : g.cases) {
    const int64_t n = k.rows * k.cols, nb = n / kNf4BlockSize;
    std::vector<uint8_t> packed(static_cast<size_t>(n / 2));
    std::vector<float> absmax(static_cast<size_t>(nb));
    nf4_quantize_blocks(k.input.data(), n, packed.data(), absmax.data());
    size_t bad = mismatches(packed, k.packed);
    CHECK_MSG(bad == 0, count_msg(k, "packed bytes", bad, packed.size()));
    bad = mismatches(absmax, k.absmax);
    CHECK_MSG(bad == 0, count_msg(k, "absmax", bad, absmax.size()));

    std::vector<uint8_t> absmax_q(static_cast<size_t>(nb));
    std::vector<float> scale(k.scale.size());
    float mean = 0.f;
    nf4_double_quantize(k.absmax.data(), nb, absmax_q.data(), scale.data(), &mean);
    CHECK_MSG(same_bits(mean, k.offset), k.name + ": offset " + std::to_string(mean) + " vs " +
                                             std::to_string(k.offset));
    bad = mismatches(absmax_q, k.absmax_q);
    CHECK_MSG(bad == 0, count_msg(k, "nested absmax codes", bad, absmax_q.size()));
    bad = mismatches(scale, k.scale);
    CHECK_MSG(bad == 0, count_msg(k, "nested scales", bad, scale.size()));
  }
}

TEST(nf4_dequantize_matches_bitsandbytes_bit_exact) {
  const Golden& g = golden();
  if (!g.ok) { CHECK_MSG(false, g.error); return; }
  for (const GoldenCase& k : g.cases) {
    const int64_t n = k.rows * k.cols, nb = n / kNf4BlockSize;
    std::vector<float> recovered(static_cast<size_t>(nb));
    nf4_absmax_dequantize(k.absmax_q.data(), k.scale.data(), k.offset, nb, recovered.data());
    size_t bad = mismatches(recovered, k.absmax_recovered);
    CHECK_MSG(bad == 0, count_msg(k, "recovered absmax", bad, recovered.size()));

    Nf4Tensor t{k.rows, k.cols, k.packed.data(), k.absmax_q.data(), k.scale.data(), k.offset};
    std::vector<float> deq(static_cast<size_t>(n));
    nf4_dequantize(t, 0, n, deq.data());
    std::vector<float> want = k.dequant;
    if (want.empty()) {  // the script asserted dequant == code[nibble] * recovered absmax
      want.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t byte = k.packed[size_t(i / 2)];
        want[size_t(i)] = kNf4Code[(i & 1) ? (byte & 15) : (byte >> 4)] * k.absmax_recovered[size_t(i / 64)];
      }
    }
    bad = mismatches(deq, want);
    CHECK_MSG(bad == 0, count_msg(k, "nf4_dequantize", bad, deq.size()));
    // A sub-range and the GEMM's dequantization give the same values.
    if (nb >= 3) {
      std::vector<float> part(static_cast<size_t>(64 * 2));
      nf4_dequantize(t, 64, 192, part.data());
      CHECK(std::memcmp(part.data(), deq.data() + 64, part.size() * 4) == 0);
    }
    WeightRef w;
    w.dtype = DType::NF4;
    w.out = k.rows;
    w.in = k.cols;
    w.nf4 = t;
    std::vector<float> rows(static_cast<size_t>(n));
    weight_rows_to_f32(w, 0, k.rows, rows.data());
    bad = mismatches(rows, want);
    CHECK_MSG(bad == 0, count_msg(k, "weight_rows_to_f32", bad, rows.size()));
  }
}

TEST(nf4_nearest_on_midpoints_and_codes) {
  for (int i = 0; i < 16; ++i) CHECK(nf4_nearest(kNf4Code[i]) == i);
  for (int i = 0; i < 15; ++i) {
    const float mid = (kNf4Code[i] + kNf4Code[i + 1]) / 2.0f;
    // bitsandbytes (torch.bucketize): a value exactly on a midpoint takes the lower index.
    CHECK_MSG(nf4_nearest(mid) == i, "midpoint " + std::to_string(i));
    CHECK(nf4_nearest(std::nextafter(mid, 2.0f)) == i + 1);
    CHECK(nf4_nearest(std::nextafter(mid, -2.0f)) == i);
  }
  CHECK(nf4_nearest(-1.0f) == 0 && nf4_nearest(1.0f) == 15 && nf4_nearest(0.0f) == 7);
  CHECK(nf4_nearest(-0.0f) == 7);
  CHECK(nf4_nearest(-5.0f) == 0 && nf4_nearest(5.0f) == 15);
}

TEST(nf4_round_trip_error_is_bounded) {
  // Normal weights of several scales, 600 blocks (three nested groups).
  std::mt19937 rng(42);
  std::normal_distribution<float> normal(0.f, 1.f);
  const int64_t nb = 600, n = nb * kNf4BlockSize;
  std::vector<float> w(static_cast<size_t>(n));
  for (int64_t b = 0; b < nb; ++b) {
    const float s = 0.01f * float(1 + b % 7);
    for (int i = 0; i < kNf4BlockSize; ++i) w[size_t(b * 64 + i)] = s * normal(rng);
  }
  std::vector<uint8_t> packed(static_cast<size_t>(n / 2)), absmax_q(static_cast<size_t>(nb));
  std::vector<float> absmax(static_cast<size_t>(nb)), scale(3), recovered(static_cast<size_t>(nb)), deq(static_cast<size_t>(n));
  float mean = 0.f;
  nf4_quantize_blocks(w.data(), n, packed.data(), absmax.data());
  nf4_double_quantize(absmax.data(), nb, absmax_q.data(), scale.data(), &mean);
  nf4_absmax_dequantize(absmax_q.data(), scale.data(), mean, nb, recovered.data());
  // Nested absmax: within half the widest dynamic-code gap (0.0141/2) plus one
  // step of the 65536-point grid bitsandbytes quantizes through.
  bool absmax_ok = true;
  for (int64_t b = 0; b < nb; ++b) {
    const double bound = scale[size_t(b / 256)] * (0.0141 / 2 + 2.0 / 65535) + 1e-6 * absmax[size_t(b)];
    absmax_ok = absmax_ok && std::fabs(double(recovered[size_t(b)]) - absmax[size_t(b)]) <= bound;
  }
  CHECK(absmax_ok);
  Nf4Tensor t{1, n, packed.data(), absmax_q.data(), scale.data(), mean};
  nf4_dequantize(t, 0, n, deq.data());
  // Each weight: within half the widest NF4 gap (-1 .. -0.6962) of its
  // block's absmax, plus the absmax error itself (|code| <= 1).
  bool ok = true;
  double err2 = 0, sig2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = i / 64;
    const double bound = absmax[size_t(b)] * (1.0 - 0.6961928) / 2 * 1.0001 +
                         std::fabs(double(recovered[size_t(b)]) - absmax[size_t(b)]) + 1e-7;
    const double e = std::fabs(double(deq[size_t(i)]) - w[size_t(i)]);
    ok = ok && e <= bound;
    err2 += e * e;
    sig2 += double(w[size_t(i)]) * w[size_t(i)];
  }
  CHECK(ok);
  CHECK(std::sqrt(err2 / sig2) < 0.12);  // NF4 on normal data: ~9% relative RMS error
  // Re-quantizing the dequantized weights with the same absmax is idempotent on the codes.
  std::vector<uint8_t> again(packed.size());
  std::vector<float> absmax2(static_cast<size_t>(nb));
  nf4_quantize_blocks(deq.data(), n, again.data(), absmax2.data());
  size_t same = 0;
  for (size_t i = 0; i < again.size(); ++i) same += again[i] == packed[i];
  CHECK(same > again.size() * 9 / 10);
}
