// The CPU half of device_support.h; other devices go to cuda_support.cc.
#include "device/device_support.h"

#include <sys/resource.h>

namespace qlc::harness {

std::string device_unavailable_reason(const at::Device& device) {
  if (device.is_cpu()) return "";
  if (!device.is_cuda()) return "device type of " + device.str() + " is not supported";
  return cuda_support::unavailable_reason(device);
}

void synchronize_device(const at::Device& device) {
  if (!device.is_cpu()) cuda_support::synchronize(device);
}

void reset_peak_memory(const at::Device& device) {
  if (!device.is_cpu()) cuda_support::reset_peak_memory(device);
}

int64_t peak_memory_bytes(const at::Device& device) {
  if (!device.is_cpu()) return cuda_support::peak_memory_bytes(device);
  struct rusage usage {};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

std::unique_ptr<kernels::StateAllocator> make_state_allocator(const at::Device& device) {
  if (!device.is_cpu()) return cuda_support::make_state_allocator(device);
  return std::make_unique<kernels::HostStateAllocator>();
}

}  // namespace qlc::harness
