#include "bench_support.h"

#include <mutex>
#include <set>

#include "qlc/kernels/parallel.h"

namespace qlc::bench {
namespace {

// Chunks of whole MiB keep each thread's copy long enough to run at full speed.
constexpr int64_t kCopyGrain = int64_t{1} << 20;

}  // namespace

void copy_bytes_parallel(const uint8_t* src, uint8_t* dst, int64_t bytes) {
  qlc::kernels::parallel_for(bytes, kCopyGrain, [&](int64_t begin, int64_t end) {
    std::memcpy(dst + begin, src + begin, static_cast<size_t>(end - begin));
  });
}

void set_bytes_per_iteration(benchmark::State& state, int64_t bytes) {
  state.SetBytesProcessed(state.iterations() * bytes);
  state.counters["bytes"] = static_cast<double>(bytes);
}

void register_memcpy_baseline(const char* label, int64_t bytes) {
  static std::mutex mutex;
  static std::set<std::string> registered;
  std::lock_guard<std::mutex> lock(mutex);
  if (!registered.insert(label).second) return;
  const std::string name = std::string("memcpy/") + label;
  benchmark::RegisterBenchmark(name.c_str(), [bytes](benchmark::State& state) {
    const int64_t copy = bytes / 2;  // read `copy` bytes, write as many: `bytes` moved in all
    AlignedBuffer<uint8_t> src(copy), dst(copy);
    std::memset(src.data(), 1, static_cast<size_t>(copy));
    for (auto _ : state) {
      copy_bytes_parallel(src.data(), dst.data(), copy);
      benchmark::ClobberMemory();
    }
    set_bytes_per_iteration(state, bytes);
  })->UseRealTime()->Unit(benchmark::kMillisecond);
}

std::string register_memcpy_baseline_for(int64_t bytes) {
  const std::string label = std::to_string(bytes) + "B";
  register_memcpy_baseline(label.c_str(), bytes);
  return label;
}

}  // namespace qlc::bench
