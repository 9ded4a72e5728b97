// CUDA driver probe through dlopen (see cuda_driver_probe.h for why no CUDA headers). The
// function types below are the CUDA driver API's documented C signatures; CUresult and CUdevice
// are ints there, and attributes 75/76 are CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR/MINOR.
#include "device/cuda_driver_probe.h"

#include <dlfcn.h>

#include <cstddef>

namespace qlc::harness {
namespace {

using CuInit = int (*)(unsigned int);
using CuDriverGetVersion = int (*)(int*);
using CuDeviceGetCount = int (*)(int*);
using CuDeviceGet = int (*)(int*, int);
using CuDeviceGetName = int (*)(char*, int, int);
using CuDeviceGetAttribute = int (*)(int*, int, int);
using CuDeviceTotalMem = int (*)(size_t*, int);
using CuGetErrorString = int (*)(int, const char**);

constexpr int kAttrCapabilityMajor = 75;
constexpr int kAttrCapabilityMinor = 76;

template <typename F>
F symbol(void* lib, const char* name) {
  return reinterpret_cast<F>(dlsym(lib, name));
}

}  // namespace

CudaDriverProbe probe_cuda_driver() {
  CudaDriverProbe probe;
  // Kept loaded: LibTorch may load it too, and unloading a driver library buys nothing.
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* e = dlerror();
    probe.error = std::string("no NVIDIA driver: ") + (e ? e : "libcuda.so.1 not found");
    return probe;
  }
  auto init = symbol<CuInit>(lib, "cuInit");
  auto get_version = symbol<CuDriverGetVersion>(lib, "cuDriverGetVersion");
  auto get_count = symbol<CuDeviceGetCount>(lib, "cuDeviceGetCount");
  auto get_device = symbol<CuDeviceGet>(lib, "cuDeviceGet");
  auto get_name = symbol<CuDeviceGetName>(lib, "cuDeviceGetName");
  auto get_attribute = symbol<CuDeviceGetAttribute>(lib, "cuDeviceGetAttribute");
  auto total_mem = symbol<CuDeviceTotalMem>(lib, "cuDeviceTotalMem_v2");
  auto error_string = symbol<CuGetErrorString>(lib, "cuGetErrorString");
  if (!init || !get_version || !get_count || !get_device || !get_name || !get_attribute) {
    probe.error = "libcuda.so.1 lacks the driver API functions it should have";
    return probe;
  }
  get_version(&probe.driver_version);
  if (int rc = init(0); rc != 0) {
    const char* text = nullptr;
    if (error_string) error_string(rc, &text);
    probe.error = "cuInit failed: " + (text ? std::string(text) : "error " + std::to_string(rc));
    return probe;
  }
  int count = 0;
  if (get_count(&count) != 0) count = 0;
  for (int i = 0; i < count; ++i) {
    int dev = 0;
    if (get_device(&dev, i) != 0) continue;
    CudaDriverDevice d;
    d.index = i;
    char name[256] = {};
    if (get_name(name, sizeof name - 1, dev) == 0) d.name = name;
    get_attribute(&d.capability_major, kAttrCapabilityMajor, dev);
    get_attribute(&d.capability_minor, kAttrCapabilityMinor, dev);
    size_t bytes = 0;
    if (total_mem && total_mem(&bytes, dev) == 0) d.total_memory_bytes = static_cast<int64_t>(bytes);
    probe.devices.push_back(d);
  }
  probe.usable = true;
  if (count == 0) probe.error = "the NVIDIA driver sees no GPU";
  return probe;
}

}  // namespace qlc::harness
