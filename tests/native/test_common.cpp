#include <atomic>
#include <vector>

#include "check.h"
#include "common/dtype.h"
#include "common/memory.h"
#include "common/threads.h"

using namespace ls;

TEST(memory_tracks_current_and_peak_per_category) {
  MemStats before = mem_stats();
  int a = int(MemCategory::Adapters), w = int(MemCategory::Workspace);
  {
    Buffer<float> x(MemCategory::Adapters, 1000);
    Buffer<float> y(MemCategory::Workspace, 500);
    MemStats s = mem_stats();
    CHECK(s.current[a] - before.current[a] == 4000);
    CHECK(s.current[w] - before.current[w] == 2000);
    CHECK(s.total_current - before.total_current == 6000);
  }
  MemStats after = mem_stats();
  CHECK(after.current[a] == before.current[a]);
  CHECK(after.peak[a] >= before.current[a] + 4000);
  CHECK(after.total_peak >= before.total_current + 6000);
}

TEST(parallel_for_covers_every_index_once) {
  for (int64_t n : {int64_t(1), int64_t(3), int64_t(63), int64_t(65), int64_t(1000), int64_t(100003)}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    for (auto& h : hits) h.store(0);
    parallel_for(n, 7, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
    });
    bool ok = true;
    for (auto& h : hits) ok &= h.load() == 1;
    CHECK_MSG(ok, "n=" + std::to_string(n));
  }
}

TEST(bf16_and_f16_round_trip) {
  CHECK(bf16_to_f32(f32_to_bf16(1.0f)) == 1.0f);
  CHECK(bf16_to_f32(f32_to_bf16(-2.5f)) == -2.5f);
  // 1 + 2^-8 is exactly halfway between two bf16 values: ties to even -> 1.0
  CHECK(bf16_to_f32(f32_to_bf16(1.0f + 1.0f / 256)) == 1.0f);
  CHECK(f16_to_f32(f32_to_f16(0.333251953125f)) == 0.333251953125f);
  CHECK(f16_to_f32(f32_to_f16(65504.f)) == 65504.f);
  CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(f32_to_f16(std::ldexp(1.0f, -24)) == 0x0001);
}
