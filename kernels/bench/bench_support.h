// Shared pieces of the kernel benchmarks. Every suite reports bytes moved per second
// (SetBytesProcessed) and registers a plain memory copy of the same number of bytes, so the figure
// to track is the ratio kernel GB/s / memcpy GB/s measured in the same run on the same machine.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <random>
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

// The baseline: copying `bytes` bytes with all cores (same threading as the kernels).
void copy_bytes_parallel(const uint8_t* src, uint8_t* dst, int64_t bytes);

// Registers "memcpy/<label>" moving `bytes` bytes, for the ratio against a kernel moving as many.
void register_memcpy_baseline(const char* label, int64_t bytes);

}  // namespace qlc::bench
