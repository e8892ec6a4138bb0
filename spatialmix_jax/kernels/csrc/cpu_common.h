// What the native CPU kernels share: a parallel loop on XLA's intra-op thread pool and
// 16-float vectors (GCC/Clang vector extensions: without AVX-512 a 16-float vector just
// becomes several narrower registers).

#ifndef SPATIALMIX_CSRC_CPU_COMMON_H_
#define SPATIALMIX_CSRC_CPU_COMMON_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace spatialmix {

// Runs fn(item) for item in [0, n) on the pool and the calling thread. The caller only
// waits for items to finish, never for tasks to start, so it cannot deadlock when it is
// itself a pool thread; late tasks find no work and touch only the shared state.
template <typename F>
void ParallelFor(ffi::ThreadPool& pool, int64_t n, const F& fn) {
  if (n <= 0) return;
  int64_t threads = std::min<int64_t>(pool.num_threads(), n - 1);
  if (threads <= 0) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    std::mutex mu;
    std::condition_variable cv;
  };
  auto state = std::make_shared<State>();
  const F* fp = &fn;
  auto work = [state, n, fp]() {
    for (int64_t i; (i = state->next.fetch_add(1)) < n;) {
      (*fp)(i);
      if (state->done.fetch_add(1) + 1 == n) {
        std::lock_guard<std::mutex> lock(state->mu);
        state->cv.notify_all();
      }
    }
  };
  for (int64_t t = 0; t < threads; ++t) {
    auto task = work;
    pool.Schedule(std::move(task));
  }
  work();
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->done.load() == n; });
}

typedef float V16 __attribute__((vector_size(64), aligned(4), may_alias));
constexpr int64_t kLanes = 16;

inline V16 Load(const float* p) { return *reinterpret_cast<const V16*>(p); }
inline void Store(float* p, V16 v) { *reinterpret_cast<V16*>(p) = v; }

}  // namespace spatialmix

#endif  // SPATIALMIX_CSRC_CPU_COMMON_H_
