// A process-wide pool of worker threads. parallel_for splits [0, n) into
// contiguous ranges; the calling thread takes part. Calls made from inside a
// worker run serially on that worker (no nested parallelism).
#pragma once
#include <cstdint>
#include <functional>

namespace ls {

// Number of threads parallel_for uses (workers + caller). Defaults to the
// hardware concurrency; LORA_STUDIO_THREADS overrides it.
int num_threads();
void set_num_threads(int n);

// fn(begin, end, thread_index) over ranges of at least `grain` items.
// Ranges are handed out dynamically, so uneven work balances itself.
void parallel_for(int64_t n, int64_t grain,
                  const std::function<void(int64_t begin, int64_t end, int thread)>& fn);

// Index of the calling thread within the current parallel_for (0 outside one).
int current_thread_index();

// The most threads a parallel_for(n, grain) on a pool of `threads` can put to
// work: every thread-indexed scratch buffer of a kernel exists at most this
// many times (the memory plan counts it so).
int parallel_for_max_threads(int64_t n, int64_t grain, int threads);

}  // namespace ls
