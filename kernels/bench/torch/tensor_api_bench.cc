// The tensor-level API as a caller sees it: NF4 dequantize and quantize through at::Tensor, with a
// fresh output per call (what the allocating forms do) and with an output reused across calls
// (the out= forms), each next to a memcpy of the same bytes (bench_support.h). Sizes: 16M and 64M
// elements, or 64K with QLC_BENCH_SMALL=1 (the quick check). tensor_api_vs_bnb.py runs this
// binary and bitsandbytes in one run and prints the ratios.
//
// Bytes per call: dequantize reads the packed codes (n/2) and the absmax (4 n/64) and writes n
// values; quantize reads n values and writes the same codes and absmax.
#include <ATen/ops/empty.h>

#include <cstring>
#include <map>
#include <string>

#include "bench_support.h"
#include "qlc/kernels/blockwise_4bit.h"
#include "qlc/kernels/parallel.h"
#include "qlc/kernels/tensor_api.h"

namespace qlc::bench {
namespace {

using kernels::QuantType4;

constexpr int64_t kBlocksize = 64;

std::string dtype_name(at::ScalarType t) {
  return t == at::kFloat ? "fp32" : t == at::kHalf ? "fp16" : "bf16";
}
std::string size_name(int64_t n) {
  return n >= (int64_t{1} << 20) ? std::to_string(n >> 20) + "M" : std::to_string(n >> 10) + "K";
}
int64_t bytes_4bit(int64_t n, at::ScalarType values) {
  return n * static_cast<int64_t>(c10::elementSize(values)) + kernels::packed_bytes_4bit(n) +
         kernels::num_blocks(n, kBlocksize) * 4;
}

// Normal weights, seeded, built once per (size, dtype) and kept for the run.
const at::Tensor& weights(int64_t n, at::ScalarType dtype) {
  static std::map<std::pair<int64_t, int>, at::Tensor> cache;
  at::Tensor& slot = cache[{n, static_cast<int>(dtype)}];
  if (!slot.defined()) {
    const std::vector<float> v = normal_floats(n);
    at::Tensor f = at::empty({n / 4096, 4096}, at::kFloat);
    std::memcpy(f.data_ptr(), v.data(), v.size() * sizeof(float));
    slot = f.to(dtype);
  }
  return slot;
}

const kernels::QuantState4& state(int64_t n, at::ScalarType dtype) {
  static std::map<std::pair<int64_t, int>, kernels::QuantState4> cache;
  auto it = cache.find({n, static_cast<int>(dtype)});
  if (it == cache.end())
    it = cache.emplace(std::make_pair(n, static_cast<int>(dtype)),
                       kernels::quantize_4bit(weights(n, dtype), QuantType4::kNf4, kBlocksize)).first;
  return it->second;
}

void dequantize_fresh(benchmark::State& s, int64_t n, at::ScalarType dtype, int64_t bytes) {
  const kernels::QuantState4& q = state(n, dtype);
  for (auto _ : s) {
    at::Tensor out = kernels::dequantize_4bit(q, dtype);
    benchmark::DoNotOptimize(out.data_ptr());
  }  // `out` is freed here: the next call gets fresh pages, as a caller's would
  set_bytes_per_iteration(s, bytes);
}

void dequantize_reused(benchmark::State& s, int64_t n, at::ScalarType dtype, int64_t bytes) {
  const kernels::QuantState4& q = state(n, dtype);
  const at::Tensor out = at::empty(q.shape, at::TensorOptions().dtype(dtype));
  kernels::dequantize_4bit_out(q, out);  // first touch outside the timing
  for (auto _ : s) {
    kernels::dequantize_4bit_out(q, out);
    benchmark::ClobberMemory();
  }
  set_bytes_per_iteration(s, bytes);
}

void quantize_fresh(benchmark::State& s, int64_t n, at::ScalarType dtype, int64_t bytes) {
  const at::Tensor& w = weights(n, dtype);
  for (auto _ : s) {
    kernels::QuantState4 q = kernels::quantize_4bit(w, QuantType4::kNf4, kBlocksize);
    benchmark::DoNotOptimize(q.packed.data_ptr());
  }
  set_bytes_per_iteration(s, bytes);
}

void quantize_reused(benchmark::State& s, int64_t n, at::ScalarType dtype, int64_t bytes) {
  const at::Tensor& w = weights(n, dtype);
  kernels::QuantState4 q = kernels::quantize_4bit(w, QuantType4::kNf4, kBlocksize);
  for (auto _ : s) {
    kernels::quantize_4bit_out(w, q);
    benchmark::ClobberMemory();
  }
  set_bytes_per_iteration(s, bytes);
}

template <class Fn>
void add(const std::string& name, Fn fn, int64_t n, at::ScalarType dtype) {
  const int64_t bytes = bytes_4bit(n, dtype);
  register_memcpy_baseline_for(bytes);
  benchmark::RegisterBenchmark(name.c_str(), fn, n, dtype, bytes)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

bool small_sizes() {
  const char* v = std::getenv("QLC_BENCH_SMALL");
  return v != nullptr && std::string(v) == "1";
}

const bool registered = [] {
  benchmark::AddCustomContext("qlc_threads", std::to_string(kernels::num_threads()));
  const std::vector<int64_t> sizes =
      small_sizes() ? std::vector<int64_t>{int64_t{1} << 16} : std::vector<int64_t>{k16M, k64M};
  for (int64_t n : sizes) {
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      const std::string suffix = "/nf4/" + dtype_name(dtype) + "/" + size_name(n);
      add("tensor_dequantize_4bit" + suffix + "/fresh", dequantize_fresh, n, dtype);
      add("tensor_dequantize_4bit" + suffix + "/reused", dequantize_reused, n, dtype);
    }
    for (at::ScalarType dtype : {at::kBFloat16, at::kHalf, at::kFloat}) {
      const std::string suffix = "/nf4/" + dtype_name(dtype) + "/" + size_name(n);
      add("tensor_quantize_4bit" + suffix + "/fresh", quantize_fresh, n, dtype);
      add("tensor_quantize_4bit" + suffix + "/reused", quantize_reused, n, dtype);
    }
  }
  return true;
}();

}  // namespace
}  // namespace qlc::bench
