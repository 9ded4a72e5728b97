// Blockwise quantize / dequantize on the fast CPU path: NF4 / FP4 from and to fp32, bf16, fp16 at
// QLoRA's blocksize 64, and the 8-bit dynamic map at the optimizers' blocksize 256, on 16M and
// 64M elements, each next to a memcpy of the same byte count (see bench_support.h).
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "bench_support.h"
#include "qlc/kernels/blockwise_fast.h"
#include "qlc/kernels/parallel.h"

namespace qlc::bench {
namespace {

using kernels::Bf16;
using kernels::Fp16;
using kernels::QuantType4;
using kernels::Search8;

constexpr int64_t kBlocksize4 = 64;
constexpr int64_t kBlocksize8 = 256;

template <class T>
std::string dtype_name() {
  if (std::is_same<T, float>::value) return "fp32";
  if (std::is_same<T, Bf16>::value) return "bf16";
  return "fp16";
}

std::string size_name(int64_t n) { return std::to_string(n >> 20) + "M"; }

// Inputs are built once per (dtype, size) and kept for the whole run: generating 64M normal
// values takes longer than benchmarking them.
template <class T>
const T* weights(int64_t n) {
  static std::mutex mutex;
  static std::map<int64_t, std::unique_ptr<AlignedBuffer<T>>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = cache[n];
  if (!slot) {
    const std::vector<float> v = normal_floats(n);
    slot = std::make_unique<AlignedBuffer<T>>(n);
    for (int64_t i = 0; i < n; ++i) {
      slot->data()[i] = kernels::from_float<T>(v[static_cast<size_t>(i)]);
    }
  }
  return slot->data();
}

struct Quantized {
  AlignedBuffer<uint8_t> codes;
  AlignedBuffer<float> absmax;
  Quantized(int64_t code_bytes, int64_t blocks) : codes(code_bytes), absmax(blocks) {}
};

// The weights quantized once per (format, size), as the dequantizers' input.
const Quantized& quantized(int format, int64_t n) {  // format: 0 nf4, 1 fp4, 2 8-bit signed
  static std::mutex mutex;
  static std::map<std::pair<int, int64_t>, std::unique_ptr<Quantized>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = cache[{format, n}];
  if (!slot) {
    const float* x = weights<float>(n);
    if (format < 2) {
      const QuantType4 type = format == 0 ? QuantType4::kNf4 : QuantType4::kFp4;
      slot = std::make_unique<Quantized>(kernels::packed_bytes_4bit(n),
                                         kernels::num_blocks(n, kBlocksize4));
      kernels::quantize_4bit_fast(x, n, kBlocksize4, type, slot->codes.data(), slot->absmax.data());
    } else {
      slot = std::make_unique<Quantized>(n, kernels::num_blocks(n, kBlocksize8));
      kernels::quantize_8bit_fast(x, n, kBlocksize8, true, Search8::kBnbCpuLibrary,
                                  slot->codes.data(), slot->absmax.data());
    }
  }
  return *slot;
}

template <class In>
void quantize_4bit(benchmark::State& state, QuantType4 type, int64_t n, int64_t bytes) {
  const In* x = weights<In>(n);
  AlignedBuffer<uint8_t> packed(kernels::packed_bytes_4bit(n));
  AlignedBuffer<float> absmax(kernels::num_blocks(n, kBlocksize4));
  for (auto _ : state) {
    kernels::quantize_4bit_fast(x, n, kBlocksize4, type, packed.data(), absmax.data());
    benchmark::ClobberMemory();
  }
  set_bytes_per_iteration(state, bytes);
}

template <class Out>
void dequantize_4bit(benchmark::State& state, QuantType4 type, int64_t n, int64_t bytes) {
  const Quantized& q = quantized(type == QuantType4::kNf4 ? 0 : 1, n);
  AlignedBuffer<Out> out(n);
  for (auto _ : state) {
    kernels::dequantize_4bit_fast(q.codes.data(), q.absmax.data(), n, kBlocksize4, type,
                                  out.data());
    benchmark::ClobberMemory();
  }
  set_bytes_per_iteration(state, bytes);
}

template <class In>
void quantize_8bit(benchmark::State& state, Search8 search, int64_t n, int64_t bytes) {
  const In* x = weights<In>(n);
  AlignedBuffer<uint8_t> codes(n);
  AlignedBuffer<float> absmax(kernels::num_blocks(n, kBlocksize8));
  for (auto _ : state) {
    kernels::quantize_8bit_fast(x, n, kBlocksize8, true, search, codes.data(), absmax.data());
    benchmark::ClobberMemory();
  }
  set_bytes_per_iteration(state, bytes);
}

template <class Out>
void dequantize_8bit(benchmark::State& state, int64_t n, int64_t bytes) {
  const Quantized& q = quantized(2, n);
  AlignedBuffer<Out> out(n);
  for (auto _ : state) {
    kernels::dequantize_8bit_fast(q.codes.data(), q.absmax.data(), n, kBlocksize8, true,
                                  out.data());
    benchmark::ClobberMemory();
  }
  set_bytes_per_iteration(state, bytes);
}

// Registers one kernel benchmark, preceded by its memcpy baseline when that is new.
template <class Fn, class... Args>
void add(const std::string& name, int64_t bytes, Fn fn, Args... args) {
  register_memcpy_baseline_for(bytes);
  benchmark::RegisterBenchmark(name.c_str(), fn, args..., bytes)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

template <class T>
void register_dtype(int64_t n) {
  const int64_t elem = sizeof(T);
  const int64_t absmax4 = kernels::num_blocks(n, kBlocksize4) * 4;
  const int64_t absmax8 = kernels::num_blocks(n, kBlocksize8) * 4;
  const int64_t bytes4 = n * elem + kernels::packed_bytes_4bit(n) + absmax4;
  const int64_t bytes8 = n * elem + n + absmax8;
  const std::string suffix = "/" + dtype_name<T>() + "/" + size_name(n);
  for (QuantType4 type : {QuantType4::kNf4, QuantType4::kFp4}) {
    add("quantize_4bit/" + to_string(type) + suffix, bytes4, quantize_4bit<T>, type, n);
    add("dequantize_4bit/" + to_string(type) + suffix, bytes4, dequantize_4bit<T>, type, n);
  }
  add("quantize_8bit/signed_bnb" + suffix, bytes8, quantize_8bit<T>, Search8::kBnbCpuLibrary, n);
  add("quantize_8bit/signed_nearest" + suffix, bytes8, quantize_8bit<T>, Search8::kNearest, n);
  add("dequantize_8bit/signed" + suffix, bytes8, dequantize_8bit<T>, n);
}

const bool registered = [] {
  benchmark::AddCustomContext("qlc_cpu_isa", kernels::active_cpu_isa_name());
  const kernels::CpuIsa kernel_isa = kernels::fast_kernel_isa(kernels::FastConfig{});
  benchmark::AddCustomContext("qlc_kernel_isa", kernels::to_string(kernel_isa));
  benchmark::AddCustomContext("qlc_threads", std::to_string(kernels::num_threads()));
  for (int64_t n : {k16M, k64M}) {
    register_dtype<float>(n);
    register_dtype<Bf16>(n);
    register_dtype<Fp16>(n);
  }
  return true;
}();

}  // namespace
}  // namespace qlc::bench
