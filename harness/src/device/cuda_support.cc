// ============================================================================================
// THE ONE FILE OF THE HARNESS THAT NEEDS A CUDA LIBTORCH (c10/cuda: allocator statistics,
// streams, device synchronisation) and the kernels' CUDA launchers.
// Its CUDA half compiles only when the kernels were built with CUDA (QLC_HAVE_CUDA_KERNELS) and
// LibTorch has CUDA (ATen/cuda/CUDAConfig.h is generated only then: Debian's LibTorch 1.13 and the
// CPU wheels lack it and cannot compile c10/cuda code). Otherwise every CUDA case is skipped with
// the reason, and nothing here is reachable.
// ============================================================================================
#include <ATen/Context.h>

#include <new>
#include <stdexcept>

#include "device/device_support.h"

#if defined(QLC_HAVE_CUDA_KERNELS) && __has_include(<ATen/cuda/CUDAConfig.h>)
#define QLC_HARNESS_CUDA 1
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "qlc/kernels/cuda_kernels.h"
#endif

namespace qlc::harness {

#if defined(QLC_HARNESS_CUDA)

namespace cuda_support {

bool built_with_cuda() { return true; }

std::string unavailable_reason(const at::Device& device) {
  if (!at::hasCUDA()) return "LibTorch finds no usable CUDA device or driver";
  const int64_t count = static_cast<int64_t>(c10::cuda::device_count());
  if (device.index() >= count) {
    return "device " + device.str() + " does not exist (" + std::to_string(count) + " visible)";
  }
  std::string reason;
  c10::cuda::CUDAGuard guard(device);
  if (!kernels::cuda::cuda_device_usable(&reason)) return "CUDA kernels cannot run: " + reason;
  return "";
}

void synchronize(const at::Device& device) {
  c10::cuda::CUDAGuard guard(device);
  c10::cuda::device_synchronize();
}

void reset_peak_memory(const at::Device& device) {
  c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
}

int64_t peak_memory_bytes(const at::Device& device) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
  // Index 0 is StatType::AGGREGATE (all pools), the enum's first value in every LibTorch; the
  // enum itself moved (c10::cuda::CUDACachingAllocator, then c10::CachingDeviceAllocator, c10 in
  // 2.14), so it is not named here.
  return stats.allocated_bytes[0].peak;
}

std::unique_ptr<kernels::StateAllocator> make_state_allocator(const at::Device& device) {
  c10::cuda::CUDAGuard guard(device);
  return std::make_unique<kernels::cuda::CudaStateAllocator>(
      static_cast<void*>(c10::cuda::getCurrentCUDAStream(device.index()).stream()));
}

}  // namespace cuda_support

void cuda_adamw_step(const DeviceAdamWStep& s, const kernels::AdamWConfig& config, int64_t step) {
  c10::cuda::CUDAGuard guard(s.param.device());
  void* stream = static_cast<void*>(c10::cuda::getCurrentCUDAStream(s.param.device().index()).stream());
  const int64_t n = s.param.numel();
  with_kernel_float_type(s.param.scalar_type(), [&](auto tag) {
    using P = decltype(tag);
    P* p = static_cast<P*>(s.param.data_ptr());
    const P* g = static_cast<const P*>(s.grad.data_ptr());
    switch (s.layout.kernel) {
      case kernels::AdamWKernel::kFp32States:
        kernels::cuda::adamw_fp32_states_step<P, P>(p, g, static_cast<float*>(s.m),
                                                     static_cast<float*>(s.v), n, config, step, stream);
        break;
      case kernels::AdamWKernel::kParamStates:
        kernels::cuda::adamw_param_states_step<P>(p, g, static_cast<P*>(s.m), static_cast<P*>(s.v), n,
                                                  config, step, stream);
        break;
      case kernels::AdamWKernel::k8bitStates: {
        kernels::AdamW8bitStates states{static_cast<uint8_t*>(s.m), static_cast<uint8_t*>(s.v),
                                        s.m_absmax, s.v_absmax};
        if (s.layout.paged) {
          kernels::cuda::paged_adamw_8bit_step<P, P>(p, g, states, n, config, step, stream);
        } else {
          kernels::cuda::adamw_8bit_step<P, P>(p, g, states, n, config, step, stream);
        }
        break;
      }
    }
  });
}

#else  // no CUDA in this build

namespace cuda_support {

bool built_with_cuda() { return false; }

std::string unavailable_reason(const at::Device& device) {
#if __has_include(<ATen/cuda/CUDAConfig.h>)
  return "this build cannot run " + device.str() +
         ": the harness was built without CUDA kernels (QLC_ENABLE_CUDA=OFF)";
#else
  return "this build cannot run " + device.str() + ": LibTorch was built without CUDA";
#endif
}

[[noreturn]] void no_cuda() { throw std::logic_error("CUDA support is not built in"); }
void synchronize(const at::Device&) { no_cuda(); }
void reset_peak_memory(const at::Device&) { no_cuda(); }
int64_t peak_memory_bytes(const at::Device&) { no_cuda(); }
std::unique_ptr<kernels::StateAllocator> make_state_allocator(const at::Device&) { no_cuda(); }

}  // namespace cuda_support

void cuda_adamw_step(const DeviceAdamWStep&, const kernels::AdamWConfig&, int64_t) {
  cuda_support::no_cuda();
}

#endif

}  // namespace qlc::harness
