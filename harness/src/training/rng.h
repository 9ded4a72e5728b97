// A small deterministic random source (SplitMix64) for everything the harness draws itself:
// checkpoint weights, LoRA A initialisation, the synthetic task. It is our own so that the same
// seed gives the same bits with every LibTorch version and on every machine (LibTorch's own
// samplers changed between releases), which lets runs of different builds be compared.
#pragma once

#include <cstdint>
#include <string>

namespace qlc::harness {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    state_ += 0x9E3779B97F4A7C15ull;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform01() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Uniform in [-bound, bound).
  double uniform_symmetric(double bound) { return (2.0 * uniform01() - 1.0) * bound; }
  // Uniform integer in [0, n): modulo bias below n / 2^64, irrelevant here.
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }

 private:
  uint64_t state_;
};

// A seed for one named stream (a tensor, a layer), independent of the order streams are drawn in.
inline uint64_t stream_seed(uint64_t seed, const std::string& name) {
  uint64_t h = 0xCBF29CE484222325ull;  // FNV-1a
  for (unsigned char ch : name) {
    h ^= ch;
    h *= 0x100000001B3ull;
  }
  SplitMix64 mix(seed ^ h);
  return mix.next();
}

}  // namespace qlc::harness
