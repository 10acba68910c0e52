#include <cstring>

#include "check.h"

namespace lstest {
std::vector<TestCase>& registry() {
  static std::vector<TestCase> r;
  return r;
}
int g_failures_in_test = 0;
}  // namespace lstest

int main(int argc, char** argv) {
  const char* filter = argc > 1 ? argv[1] : nullptr;
  int passed = 0, failed = 0;
  for (auto& t : lstest::registry()) {
    if (filter && !std::strstr(t.name, filter)) continue;
    lstest::g_failures_in_test = 0;
    try {
      t.fn();
    } catch (const std::exception& e) {
      lstest::fail(__FILE__, __LINE__, std::string("exception: ") + e.what());
    }
    if (lstest::g_failures_in_test) {
      std::printf("FAIL %s\n", t.name);
      ++failed;
    } else {
      std::printf("ok   %s\n", t.name);
      ++passed;
    }
  }
  std::printf("native: %d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
