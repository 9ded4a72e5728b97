#include "qlc/kernels/parallel.h"

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace qlc::kernels {

int num_threads() {
  static const int count = [] {
    if (const char* env = std::getenv("QLC_NUM_THREADS")) {
      const int n = std::atoi(env);
      if (n >= 1) return n;
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
  }();
  return count;
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  const int64_t units = (n + grain - 1) / grain;
  const int64_t threads = std::min<int64_t>(num_threads(), units);
  if (threads <= 1) {
    fn(0, n);
    return;
  }
  // Contiguous chunks of whole grains, one per thread: the cheapest split for streaming kernels.
  const int64_t per_thread = (units + threads - 1) / threads;
  std::exception_ptr error;
  std::mutex error_mutex;
  auto run = [&](int64_t begin, int64_t end) {
    try {
      fn(begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(threads - 1));
  for (int64_t t = 1; t < threads; ++t) {
    const int64_t begin = t * per_thread * grain;
    if (begin >= n) break;
    const int64_t end = std::min(n, begin + per_thread * grain);
    pool.emplace_back(run, begin, end);
  }
  run(0, std::min(n, per_thread * grain));
  for (std::thread& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace qlc::kernels
