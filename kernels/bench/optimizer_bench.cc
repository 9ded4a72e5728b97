// AdamW steps on the fast CPU path: 8-bit blockwise states (bnb.optim.AdamW8bit) and fp32 states
// (bnb.optim.AdamW), fp32 parameters and gradients, 16M and 64M elements, each next to a memcpy of
// the same byte count (bench_support.h). Bytes per step = everything read plus everything written:
//   8-bit: p 4 + 4, g 4, m and v codes 1 + 1 each, absmax 4 + 4 per 256 elements each  = 16 n + 16 blocks
//   fp32:  p 4 + 4, g 4, m 4 + 4, v 4 + 4                                                  = 28 n
#include <algorithm>
#include <string>
#include <vector>

#include "bench_support.h"
#include "qlc/kernels/adamw.h"
#include "qlc/kernels/parallel.h"

namespace qlc::bench {
namespace {

std::string size_name(int64_t n) { return std::to_string(n >> 20) + "M"; }

int64_t blocks_of(int64_t n) { return (n + kernels::kAdamW8bitBlocksize - 1) / kernels::kAdamW8bitBlocksize; }

// Parameters and a gradient of unit scale; states start at zero (a first step) and then evolve
// over the timed steps as in training.
void adamw_8bit(benchmark::State& state, int64_t n, int64_t bytes) {
  AlignedBuffer<float> p(n), g(n), m_absmax(blocks_of(n)), v_absmax(blocks_of(n));
  AlignedBuffer<uint8_t> m(n), v(n);
  const std::vector<float> init = normal_floats(n, 1), grad = normal_floats(n, 2);
  std::copy(init.begin(), init.end(), p.data());
  std::copy(grad.begin(), grad.end(), g.data());
  const kernels::AdamW8bitStates states{m.data(), v.data(), m_absmax.data(), v_absmax.data()};
  int64_t step = 0;
  for (auto _ : state) {
    kernels::adamw_8bit_states_fast(p.data(), g.data(), states, n, kernels::AdamWConfig{}, ++step);
    benchmark::ClobberMemory();
  }
  set_bytes_per_iteration(state, bytes);
}

void adamw_fp32(benchmark::State& state, int64_t n, int64_t bytes) {
  AlignedBuffer<float> p(n), g(n), m(n), v(n);
  const std::vector<float> init = normal_floats(n, 1), grad = normal_floats(n, 2);
  std::copy(init.begin(), init.end(), p.data());
  std::copy(grad.begin(), grad.end(), g.data());
  int64_t step = 0;
  for (auto _ : state) {
    kernels::adamw_fp32_states_fast(p.data(), g.data(), m.data(), v.data(), n, kernels::AdamWConfig{}, ++step);
    benchmark::ClobberMemory();
  }
  set_bytes_per_iteration(state, bytes);
}

template <class Fn>
void add(const std::string& name, int64_t n, int64_t bytes, Fn fn) {
  register_memcpy_baseline_for(bytes);
  benchmark::RegisterBenchmark(name.c_str(), fn, n, bytes)->UseRealTime()->Unit(benchmark::kMillisecond);
}

const bool registered = [] {
  for (int64_t n : {k16M, k64M}) {
    add("adamw_8bit/fp32/" + size_name(n), n, 16 * n + 16 * blocks_of(n), adamw_8bit);
    add("adamw_fp32_states/fp32/" + size_name(n), n, 28 * n, adamw_fp32);
  }
  return true;
}();

}  // namespace
}  // namespace qlc::bench
