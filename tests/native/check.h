// A minimal test harness for the native core: TEST(name) registers a test,
// CHECK* record failures without aborting the test. main() in main.cpp runs
// every test (or those whose name contains argv[1]) and prints
// "N passed, N failed".
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace lstest {

struct TestCase {
  const char* name;
  std::function<void()> fn;
};
std::vector<TestCase>& registry();
extern int g_failures_in_test;

struct Registrar {
  Registrar(const char* name, std::function<void()> fn) { registry().push_back({name, fn}); }
};

inline void fail(const char* file, int line, const std::string& what) {
  if (g_failures_in_test < 10) std::printf("    %s:%d: %s\n", file, line, what.c_str());
  ++g_failures_in_test;
}

// max |a-b| / (atol + rtol*|b|) over n values; reports the worst index.
inline bool all_close(const float* a, const float* b, size_t n, double atol, double rtol,
                      std::string* why) {
  double worst = 0; size_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    double d = std::fabs(double(a[i]) - double(b[i]));
    double lim = atol + rtol * std::fabs(double(b[i]));
    double r = (std::isnan(a[i]) != std::isnan(b[i])) ? 1e30 : d / lim;
    if (r > worst) { worst = r; at = i; }
  }
  if (worst > 1.0) {
    char buf[200];
    std::snprintf(buf, sizeof buf, "mismatch at %zu: got %.9g want %.9g (%.3g x tolerance)", at,
                  double(a[at]), double(b[at]), worst);
    *why = buf;
    return false;
  }
  return true;
}

inline std::vector<float> random_vector(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

}  // namespace lstest

#define LS_CONCAT2(a, b) a##b
#define LS_CONCAT(a, b) LS_CONCAT2(a, b)
#define TEST(name)                                                        \
  static void LS_CONCAT(test_, name)();                                   \
  static lstest::Registrar LS_CONCAT(reg_, name)(#name, LS_CONCAT(test_, name)); \
  static void LS_CONCAT(test_, name)()

#define CHECK(cond) \
  do { if (!(cond)) lstest::fail(__FILE__, __LINE__, "CHECK(" #cond ") failed"); } while (0)
#define CHECK_MSG(cond, msg) \
  do { if (!(cond)) lstest::fail(__FILE__, __LINE__, std::string(msg)); } while (0)
#define CHECK_CLOSE(a, b, n, atol, rtol)                                        \
  do { std::string why_;                                                        \
       if (!lstest::all_close((a), (b), (n), (atol), (rtol), &why_))            \
         lstest::fail(__FILE__, __LINE__, #a " vs " #b ": " + why_); } while (0)
