#include "memory.h"

#include <cstdlib>
#include <new>

namespace ls {
namespace {
std::atomic<int64_t> g_current[kMemCategoryCount];
std::atomic<int64_t> g_peak[kMemCategoryCount];
std::atomic<int64_t> g_total_current{0};
std::atomic<int64_t> g_total_peak{0};

void raise_peak(std::atomic<int64_t>& peak, int64_t value) {
  int64_t seen = peak.load(std::memory_order_relaxed);
  while (value > seen && !peak.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}
}  // namespace

const char* mem_category_name(MemCategory c) {
  switch (c) {
    case MemCategory::Base: return "base";
    case MemCategory::Adapters: return "adapters";
    case MemCategory::Gradients: return "gradients";
    case MemCategory::Optimizer: return "optimizer";
    case MemCategory::Activations: return "activations";
    case MemCategory::Workspace: return "workspace";
    default: return "unknown";
  }
}

void* tracked_alloc(MemCategory cat, size_t bytes) {
  if (bytes == 0) return nullptr;
  size_t rounded = (bytes + 63) & ~size_t(63);
  void* p = std::aligned_alloc(64, rounded);
  if (!p) throw std::bad_alloc();
  int i = static_cast<int>(cat);
  int64_t now = g_current[i].fetch_add(int64_t(bytes), std::memory_order_relaxed) + int64_t(bytes);
  raise_peak(g_peak[i], now);
  int64_t total = g_total_current.fetch_add(int64_t(bytes), std::memory_order_relaxed) + int64_t(bytes);
  raise_peak(g_total_peak, total);
  return p;
}

void tracked_free(MemCategory cat, void* ptr, size_t bytes) {
  if (!ptr) return;
  std::free(ptr);
  g_current[static_cast<int>(cat)].fetch_sub(int64_t(bytes), std::memory_order_relaxed);
  g_total_current.fetch_sub(int64_t(bytes), std::memory_order_relaxed);
}

MemStats mem_stats() {
  MemStats s{};
  for (int i = 0; i < kMemCategoryCount; ++i) {
    s.current[i] = g_current[i].load(std::memory_order_relaxed);
    s.peak[i] = g_peak[i].load(std::memory_order_relaxed);
  }
  s.total_current = g_total_current.load(std::memory_order_relaxed);
  s.total_peak = g_total_peak.load(std::memory_order_relaxed);
  return s;
}

void mem_reset_peaks() {
  for (int i = 0; i < kMemCategoryCount; ++i) g_peak[i].store(g_current[i].load());
  g_total_peak.store(g_total_current.load());
}

}  // namespace ls
