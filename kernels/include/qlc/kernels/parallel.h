// Runs work over a range on all cores. The split depends only on the range, the grain and the
// thread count, and each index is handled by exactly one thread, so kernels that write disjoint
// outputs per block give the same bits whatever the thread count.
#pragma once

#include <cstdint>
#include <functional>

namespace qlc::kernels {

// Threads used by parallel_for: $QLC_NUM_THREADS if set (>= 1), else the hardware's count.
int num_threads();

// Calls fn(begin, end) on disjoint chunks covering [0, n), each a multiple of `grain` long
// (except the last). Runs inline when one chunk suffices. Exceptions thrown by fn are rethrown
// on the calling thread (the first one wins).
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace qlc::kernels
