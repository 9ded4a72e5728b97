// Device discovery, error checks and the memory helpers of cuda_kernels.h.
#include <utility>

#include "cuda_common.cuh"
#include "qlc/kernels/cuda_kernels.h"

namespace qlc::kernels::cuda {
namespace detail {

void check(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status) + " (" +
                           cudaGetErrorName(status) + ")");
}

void check_launch(const char* kernel) {
  check(cudaGetLastError(), (std::string("launching ") + kernel).c_str());
}

unsigned grid_size(int64_t items, int64_t per_block, const char* kernel) {
  const int64_t blocks = ceil_div(items, per_block);
  if (blocks > 0x7FFFFFFF) {
    throw std::invalid_argument(std::string(kernel) + ": " + std::to_string(items) +
                                " work items need more thread blocks than a CUDA grid holds");
  }
  return static_cast<unsigned>(blocks);
}

namespace {
__global__ void probe_kernel(int* flag) { *flag = 1; }
}  // namespace

}  // namespace detail

bool cuda_device_usable(std::string* reason) {
  auto fail = [&](const std::string& why) {
    if (reason != nullptr) *reason = why;
    return false;
  };
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // not sticky, but leave no error behind for the caller's next call
    return fail(cudaGetErrorString(status));
  }
  if (count == 0) return fail("no CUDA device found");
  // A device can be present and still unusable (compute mode prohibited, no kernel image for its
  // architecture): run one tiny kernel from this library and read its result back.
  int* flag = nullptr;
  status = cudaMalloc(&flag, sizeof(int));
  if (status != cudaSuccess) return fail(cudaGetErrorString(status));
  int host = 0;
  detail::probe_kernel<<<1, 1>>>(flag);
  status = cudaGetLastError();
  if (status == cudaSuccess) status = cudaMemcpy(&host, flag, sizeof(int), cudaMemcpyDeviceToHost);
  (void)cudaFree(flag);
  if (status != cudaSuccess) return fail(cudaGetErrorString(status));
  if (host != 1) return fail("a probe kernel launched but did not run");
  if (reason != nullptr) reason->clear();
  return true;
}

DeviceBuffer::DeviceBuffer(size_t bytes) : size_(bytes) {
  if (bytes > 0) detail::check(cudaMalloc(&data_, bytes), "cudaMalloc");
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) (void)cudaFree(data_);  // no throwing from a destructor
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) (void)cudaFree(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void copy_to_device(void* device_dst, const void* host_src, size_t bytes) {
  if (bytes == 0) return;
  detail::check(cudaMemcpy(device_dst, host_src, bytes, cudaMemcpyHostToDevice),
                "cudaMemcpy host to device");
}

void copy_to_host(void* host_dst, const void* device_src, size_t bytes) {
  if (bytes == 0) return;
  detail::check(cudaMemcpy(host_dst, device_src, bytes, cudaMemcpyDeviceToHost),
                "cudaMemcpy device to host");
}

void synchronize(void* stream) {
  detail::check(cudaStreamSynchronize(detail::as_stream(stream)), "cudaStreamSynchronize");
}

}  // namespace qlc::kernels::cuda
