// What the runner needs from the device beyond ATen: readiness, synchronisation, peak memory,
// optimizer-state memory and the AdamW steps on device buffers. The CUDA half lives in
// cuda_support.cc, the one file of the harness that needs a CUDA LibTorch; the CPU half in
// device_support.cc.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "qlc/kernels/adamw.h"
#include "qlc/kernels/float_bits.h"

namespace qlc::harness {

// Calls f(T{}) with the kernels' element type of a float dtype (float, Bf16, Fp16).
template <class F>
void with_kernel_float_type(at::ScalarType dtype, F&& f) {
  switch (dtype) {
    case at::kFloat: f(float{}); return;
    case at::kBFloat16: f(kernels::Bf16{}); return;
    case at::kHalf: f(kernels::Fp16{}); return;
    default: throw std::invalid_argument("expected an fp32, fp16 or bf16 tensor");
  }
}

// Empty when a case can run on `device`, else why not (the record's skip reason).
std::string device_unavailable_reason(const at::Device& device);

// Waits for the device's queued work (a no-op on CPU), so a timer reads finished work.
void synchronize_device(const at::Device& device);

// Starts a new peak (the CUDA allocator's statistics; CPU's peak RSS cannot be reset, which is
// why every case runs in a fresh worker process).
void reset_peak_memory(const at::Device& device);
// Device allocator peak on CUDA; this process's peak resident set on CPU (getrusage).
int64_t peak_memory_bytes(const at::Device& device);

// Where optimizer states live: host memory on CPU; on CUDA the kernels' allocator (cudaMalloc,
// managed memory for paged states).
std::unique_ptr<kernels::StateAllocator> make_state_allocator(const at::Device& device);

// One AdamW step on a CUDA parameter with the kernels' CUDA launchers (same arithmetic as the CPU
// functions of adamw.h). Throws where the build has no CUDA.
struct DeviceAdamWStep {
  at::Tensor param;  // contiguous, fp32/fp16/bf16, on a CUDA device
  at::Tensor grad;   // contiguous, param's dtype and device
  kernels::AdamWStateLayout layout;
  void* m = nullptr;
  void* v = nullptr;
  float* m_absmax = nullptr;
  float* v_absmax = nullptr;
};
void cuda_adamw_step(const DeviceAdamWStep& s, const kernels::AdamWConfig& config, int64_t step);

// The CUDA half (cuda_support.cc); the CPU half calls it for non-CPU devices.
namespace cuda_support {
bool built_with_cuda();  // this library can run CUDA cases at all
std::string unavailable_reason(const at::Device& device);
void synchronize(const at::Device& device);
void reset_peak_memory(const at::Device& device);
int64_t peak_memory_bytes(const at::Device& device);
std::unique_ptr<kernels::StateAllocator> make_state_allocator(const at::Device& device);
}  // namespace cuda_support

}  // namespace qlc::harness
