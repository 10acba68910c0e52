// Tracked allocator: every byte the engine allocates is counted in one of the
// categories below, so current and peak usage per category can be read at any
// time (and compared against the memory estimator).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace ls {

enum class MemCategory : int {
  Base = 0,     // frozen base weights (bf16 / NF4 / f32), norms, embeddings
  Adapters,     // LoRA A and B matrices (fp32)
  Gradients,    // gradients of adapter parameters (fp32)
  Optimizer,    // AdamW moments (fp32)
  Activations,  // saved activations, checkpoints, KV cache
  Workspace,    // transient scratch (GEMM tiles, logits chunks, recompute)
  Count
};
constexpr int kMemCategoryCount = static_cast<int>(MemCategory::Count);
const char* mem_category_name(MemCategory c);

struct MemStats {
  int64_t current[kMemCategoryCount];
  int64_t peak[kMemCategoryCount];
  int64_t total_current;
  int64_t total_peak;  // peak of the sum (not the sum of peaks)
};

// 64-byte aligned, uninitialised. Throws std::bad_alloc on failure.
void* tracked_alloc(MemCategory cat, size_t bytes);
void tracked_free(MemCategory cat, void* ptr, size_t bytes);
MemStats mem_stats();
void mem_reset_peaks();  // peaks := current

// RAII typed buffer of `count` elements in one category. Move-only.
template <class T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(MemCategory cat, size_t count) : cat_(cat), count_(count) {
    if (count) data_ = static_cast<T*>(tracked_alloc(cat, count * sizeof(T)));
  }
  ~Buffer() { reset(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      reset();
      cat_ = o.cat_; data_ = o.data_; count_ = o.count_;
      o.data_ = nullptr; o.count_ = 0;
    }
    return *this;
  }
  void reset() {
    if (data_) tracked_free(cat_, data_, count_ * sizeof(T));
    data_ = nullptr; count_ = 0;
  }
  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return count_; }
  size_t bytes() const { return count_ * sizeof(T); }
  bool empty() const { return count_ == 0; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  MemCategory category() const { return cat_; }

 private:
  MemCategory cat_ = MemCategory::Workspace;
  T* data_ = nullptr;
  size_t count_ = 0;
};

}  // namespace ls
