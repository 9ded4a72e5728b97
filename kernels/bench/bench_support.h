// Shared pieces of the kernel benchmarks. Every suite reports bytes moved per second
// (SetBytesProcessed) and registers a plain memory copy of the same number of bytes, so the figure
// to track is the ratio kernel GB/s / memcpy GB/s measured in the same run on the same machine.
//
// "Bytes" are bytes read plus bytes written by one call. A kernel and its baseline carry the same
// value in the user counter "bytes", which is how ci/bench_ratios.py pairs them.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace qlc::bench {

constexpr int64_t k16M = int64_t{1} << 24;
constexpr int64_t k64M = int64_t{1} << 26;

// Normally distributed weights, deterministic.
inline std::vector<float> normal_floats(int64_t n, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// A 64-byte-aligned buffer (as LibTorch allocates CPU tensors), zero-filled so that its pages
// are mapped before any timing starts.
template <class T>
class AlignedBuffer {
 public:
  explicit AlignedBuffer(int64_t n) {
    const size_t bytes = (static_cast<size_t>(n) * sizeof(T) + 63) / 64 * 64;
    mem_.reset(static_cast<T*>(std::aligned_alloc(64, bytes == 0 ? 64 : bytes)));
    if (!mem_) throw std::bad_alloc();
    std::memset(static_cast<void*>(mem_.get()), 0, bytes);
  }
  T* data() { return mem_.get(); }
  const T* data() const { return mem_.get(); }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> mem_;
};

// The baseline: copying `bytes` bytes with all cores (same threading as the kernels).
void copy_bytes_parallel(const uint8_t* src, uint8_t* dst, int64_t bytes);

// Reports `bytes` (read + written) per iteration: bytes/s, and the "bytes" pairing counter.
void set_bytes_per_iteration(benchmark::State& state, int64_t bytes);

// Registers "memcpy/<label>" moving `bytes` bytes in all (bytes / 2 read, bytes / 2 written), for
// the ratio against a kernel moving as many. Registering a label twice is a no-op.
void register_memcpy_baseline(const char* label, int64_t bytes);

// Registers the memcpy baseline for `bytes` under a label derived from the count; returns it.
std::string register_memcpy_baseline_for(int64_t bytes);

}  // namespace qlc::bench
