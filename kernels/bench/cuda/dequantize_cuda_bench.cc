// CUDA dequantization throughput against a device-to-device copy of the same number of bytes.
//
// Every benchmark reports bytes moved (read + written) per second; `cuda_memcpy/<bytes>B` copies
// half that many bytes with cudaMemcpyAsync (read once, written once). The ratio kernel / memcpy
// at equal bytes is the figure to improve (target >= 0.90 for dequantize_4bit). Times come from
// CUDA events around each launch (UseManualTime), so host launch overhead is not counted.
// Without a usable GPU every benchmark reports the runtime's reason as an error.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "qlc/kernels/blockwise_4bit.h"
#include "qlc/kernels/blockwise_8bit.h"
#include "qlc/kernels/cuda_kernels.h"

namespace {

namespace gpu = qlc::kernels::cuda;
using qlc::kernels::Bf16;
using qlc::kernels::Fp16;

constexpr int64_t kSizes[] = {int64_t{1} << 24, int64_t{1} << 26, int64_t{1} << 28};
constexpr int64_t kBlocksize4 = 64;   // QLoRA's
constexpr int64_t kBlocksize8 = 256;  // optimizer states'

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

// Skips the benchmark with the runtime's reason when no GPU is usable; true when it may run.
bool gpu_ready(benchmark::State& state) {
  std::string reason;
  if (gpu::cuda_device_usable(&reason)) return true;
  state.SkipWithError(("no usable CUDA device: " + reason).c_str());
  return false;
}

// Times fn() on the default stream with events, once per iteration.
template <class Fn>
void run_timed(benchmark::State& state, int64_t bytes, Fn fn) {
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  fn();  // warm-up (first-touch, module load)
  check(cudaDeviceSynchronize(), "warm-up");
  for (auto _ : state) {
    check(cudaEventRecord(start, nullptr), "cudaEventRecord");
    fn();
    check(cudaEventRecord(stop, nullptr), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    state.SetIterationTime(static_cast<double>(ms) / 1e3);
  }
  state.SetBytesProcessed(state.iterations() * bytes);
  state.counters["bytes"] = static_cast<double>(bytes);
  check(cudaEventDestroy(start), "cudaEventDestroy");
  check(cudaEventDestroy(stop), "cudaEventDestroy");
}

gpu::DeviceBuffer random_device_bytes(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint32_t> host(static_cast<size_t>((n + 3) / 4));
  for (uint32_t& w : host) w = rng();
  gpu::DeviceBuffer buffer(static_cast<size_t>(n));
  gpu::copy_to_device(buffer.data(), host.data(), static_cast<size_t>(n));
  return buffer;
}

// Positive scales, as a quantizer stores them.
gpu::DeviceBuffer device_scales(int64_t n) {
  std::vector<float> host(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) host[static_cast<size_t>(i)] = 0.01f + 0.001f * static_cast<float>(i % 97);
  gpu::DeviceBuffer buffer(static_cast<size_t>(n) * sizeof(float));
  gpu::copy_to_device(buffer.data(), host.data(), host.size() * sizeof(float));
  return buffer;
}

void memcpy_d2d(benchmark::State& state, int64_t bytes) {
  if (!gpu_ready(state)) return;
  const int64_t copy = bytes / 2;  // read `copy` bytes, write as many: `bytes` moved in all
  gpu::DeviceBuffer src(static_cast<size_t>(copy)), dst(static_cast<size_t>(copy));
  check(cudaMemset(src.data(), 1, static_cast<size_t>(copy)), "cudaMemset");
  run_timed(state, bytes, [&] {
    check(cudaMemcpyAsync(dst.data(), src.data(), static_cast<size_t>(copy), cudaMemcpyDeviceToDevice,
                          nullptr),
          "cudaMemcpyAsync");
  });
}

template <class Out>
void dequantize_4bit(benchmark::State& state, int64_t n, int64_t bytes) {
  if (!gpu_ready(state)) return;
  const gpu::DeviceBuffer packed = random_device_bytes(qlc::kernels::packed_bytes_4bit(n), 1);
  const gpu::DeviceBuffer absmax = device_scales(qlc::kernels::num_blocks(n, kBlocksize4));
  gpu::DeviceBuffer out(static_cast<size_t>(n) * sizeof(Out));
  run_timed(state, bytes, [&] {
    gpu::dequantize_4bit(packed.as<uint8_t>(), absmax.as<float>(), n, kBlocksize4,
                         qlc::kernels::QuantType4::kNf4, out.as<Out>());
  });
}

template <class Out>
void dequantize_8bit(benchmark::State& state, int64_t n, int64_t bytes) {
  if (!gpu_ready(state)) return;
  const gpu::DeviceBuffer codes = random_device_bytes(n, 2);
  const gpu::DeviceBuffer absmax = device_scales(qlc::kernels::num_blocks(n, kBlocksize8));
  gpu::DeviceBuffer out(static_cast<size_t>(n) * sizeof(Out));
  run_timed(state, bytes, [&] {
    gpu::dequantize_8bit_blockwise(codes.as<uint8_t>(), absmax.as<float>(), n, kBlocksize8, true,
                                   out.as<Out>());
  });
}

template <class Fn>
void add(const std::string& name, int64_t bytes, Fn fn, int64_t n) {
  static std::set<int64_t> baselines;
  if (baselines.insert(bytes).second) {
    benchmark::RegisterBenchmark(("cuda_memcpy/" + std::to_string(bytes) + "B").c_str(), memcpy_d2d,
                                 bytes)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
  benchmark::RegisterBenchmark(name.c_str(), fn, n, bytes)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
}

template <class Out>
void register_dtype(const char* dtype, int64_t n) {
  const int64_t out_bytes = n * static_cast<int64_t>(sizeof(Out));
  const std::string suffix = std::string("/") + dtype + "/n=" + std::to_string(n);
  add("cuda_dequantize_4bit/nf4/bs=64" + suffix,
      qlc::kernels::packed_bytes_4bit(n) + qlc::kernels::num_blocks(n, kBlocksize4) * 4 + out_bytes,
      dequantize_4bit<Out>, n);
  add("cuda_dequantize_8bit/signed/bs=256" + suffix,
      n + qlc::kernels::num_blocks(n, kBlocksize8) * 4 + out_bytes, dequantize_8bit<Out>, n);
}

const bool registered = [] {
  for (int64_t n : kSizes) {
    register_dtype<float>("fp32", n);
    register_dtype<Bf16>("bf16", n);
    register_dtype<Fp16>("fp16", n);
  }
  return true;
}();

}  // namespace
