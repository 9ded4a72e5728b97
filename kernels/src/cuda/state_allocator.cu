// CudaStateAllocator: optimizer-state buffers in device memory, or for paged optimizers in CUDA
// managed memory (never more than the device reports free), and their prefetch.
#include <mutex>

#include "adamw_common.cuh"
#include "qlc/kernels/cuda_kernels.h"

namespace qlc::kernels::cuda {
namespace detail {
namespace {

int current_device() {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  return device;
}

}  // namespace

void prefetch_to_device(const void* ptr, size_t bytes, cudaStream_t stream) {
  if (ptr == nullptr || bytes == 0) return;
  cudaPointerAttributes attributes{};
  check(cudaPointerGetAttributes(&attributes, ptr), "cudaPointerGetAttributes");
  if (attributes.type != cudaMemoryTypeManaged) return;  // nothing to page in
  const int device = current_device();
  int concurrent = 0;
  check(cudaDeviceGetAttribute(&concurrent, cudaDevAttrConcurrentManagedAccess, device),
                "cudaDeviceGetAttribute(ConcurrentManagedAccess)");
  if (concurrent == 0) return;
#if CUDART_VERSION >= 13000
  cudaMemLocation location{};
  location.type = cudaMemLocationTypeDevice;
  location.id = device;
  check(cudaMemPrefetchAsync(ptr, bytes, location, 0, stream), "cudaMemPrefetchAsync");
#else
  check(cudaMemPrefetchAsync(ptr, bytes, device, stream), "cudaMemPrefetchAsync");
#endif
}

}  // namespace detail

struct CudaStateAllocator::Accounting {
  std::mutex mutex;
  int64_t managed_bytes = 0;
};

CudaStateAllocator::CudaStateAllocator(void* stream)
    : stream_(stream), accounting_(std::make_unique<Accounting>()) {}

CudaStateAllocator::~CudaStateAllocator() = default;

int64_t CudaStateAllocator::managed_bytes() const {
  std::lock_guard<std::mutex> lock(accounting_->mutex);
  return accounting_->managed_bytes;
}

void* CudaStateAllocator::allocate(int64_t bytes, bool paged) {
  if (bytes < 0) throw std::invalid_argument("CudaStateAllocator: negative size");
  const size_t size = static_cast<size_t>(bytes > 0 ? bytes : 1);
  void* ptr = nullptr;
  if (paged) {
    std::lock_guard<std::mutex> lock(accounting_->mutex);
    size_t free_bytes = 0;
    size_t total_bytes = 0;
    detail::check(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
    // Managed memory can oversubscribe the device; bitsandbytes' paged optimizers count on it only
    // under pressure. We refuse instead: in total, no more than the device reports free.
    if (accounting_->managed_bytes + bytes > static_cast<int64_t>(free_bytes)) {
      throw ManagedMemoryExhausted(
          "paged optimizer state: " + std::to_string(bytes) + " bytes of managed memory requested, " +
          std::to_string(accounting_->managed_bytes) + " held, but cudaMemGetInfo reports only " +
          std::to_string(free_bytes) + " bytes free on the device");
    }
    detail::check(cudaMallocManaged(&ptr, size, cudaMemAttachGlobal), "cudaMallocManaged");
    accounting_->managed_bytes += bytes;
  } else {
    detail::check(cudaMalloc(&ptr, size), "cudaMalloc");
  }
  const cudaError_t status = cudaMemsetAsync(ptr, 0, size, detail::as_stream(stream_));
  if (status != cudaSuccess) {
    release(ptr, bytes, paged);
    detail::check(status, "cudaMemsetAsync (zero-filling optimizer state)");
  }
  return ptr;
}

void CudaStateAllocator::release(void* ptr, int64_t bytes, bool paged) noexcept {
  if (ptr == nullptr) return;
  (void)cudaFree(ptr);  // cudaFree serves both kinds; no throwing from release
  if (paged) {
    std::lock_guard<std::mutex> lock(accounting_->mutex);
    accounting_->managed_bytes -= bytes;
  }
}

void CudaStateAllocator::prefetch(void* ptr, int64_t bytes) {
  if (bytes > 0) {
    detail::prefetch_to_device(ptr, static_cast<size_t>(bytes), detail::as_stream(stream_));
  }
}

}  // namespace qlc::kernels::cuda
