#include "threads.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace ls {
namespace {

thread_local int t_thread_index = 0;
thread_local bool t_in_parallel = false;

// Items per range handed out by the pool: ~4 ranges per thread for balance,
// each at least `grain`.
int64_t range_size(int64_t n, int64_t grain, int threads) {
  return std::max<int64_t>(grain, (n + int64_t(threads) * 4 - 1) / (int64_t(threads) * 4));
}

class Pool {
 public:
  explicit Pool(int threads) { start(threads); }
  ~Pool() { stop(); }

  int size() const { return int(workers_.size()) + 1; }

  void resize(int threads) {
    std::lock_guard<std::mutex> run(run_mutex_);
    stop();
    start(threads);
  }

  void run(int64_t n, int64_t grain,
           const std::function<void(int64_t, int64_t, int)>& fn) {
    std::lock_guard<std::mutex> run(run_mutex_);  // one parallel region at a time
    const int64_t chunk = range_size(n, grain, size());
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = &fn;
      n_ = n;
      chunk_ = chunk;
      next_.store(0);
      active_ = int(workers_.size());
      ++generation_;
    }
    cv_.notify_all();
    work(0);
    std::unique_lock<std::mutex> lock(mutex_);
    done_cv_.wait(lock, [&] { return active_ == 0; });
    fn_ = nullptr;
  }

 private:
  void start(int threads) {
    quit_ = false;
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { loop(i); });
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      quit_ = true;
      ++generation_;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }
  void work(int index) {
    t_thread_index = index;
    t_in_parallel = true;
    for (;;) {
      int64_t begin = next_.fetch_add(chunk_);
      if (begin >= n_) break;
      (*fn_)(begin, std::min(n_, begin + chunk_), index);
    }
    t_in_parallel = false;
    t_thread_index = 0;
  }
  void loop(int index) {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (quit_) return;
      }
      work(index);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (--active_ == 0) done_cv_.notify_one();
      }
    }
  }

  std::vector<std::thread> workers_;
  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t, int64_t, int)>* fn_ = nullptr;
  int64_t n_ = 0, chunk_ = 1;
  std::atomic<int64_t> next_{0};
  int active_ = 0;
  uint64_t generation_ = 0;
  bool quit_ = false;
};

int default_threads() {
  if (const char* env = std::getenv("LORA_STUDIO_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw ? int(hw) : 1;
}

Pool& pool() {
  static Pool p(default_threads());
  return p;
}

}  // namespace

int num_threads() { return pool().size(); }

void set_num_threads(int n) { pool().resize(std::max(1, n)); }

int current_thread_index() { return t_thread_index; }

int parallel_for_max_threads(int64_t n, int64_t grain, int threads) {
  if (n <= 0) return 0;
  grain = std::max<int64_t>(1, grain);
  if (n <= grain || threads <= 1) return 1;  // runs serially on the caller
  const int64_t ranges = (n + range_size(n, grain, threads) - 1) / range_size(n, grain, threads);
  return int(std::min<int64_t>(threads, ranges));
}

void parallel_for(int64_t n, int64_t grain,
                  const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (t_in_parallel || n <= grain || num_threads() == 1) {
    fn(0, n, t_thread_index);
    return;
  }
  pool().run(n, grain, fn);
}

}  // namespace ls
