// The only code of the harness that talks to the NVIDIA driver directly (environment capture:
// device names, compute capability, driver version). It loads libcuda.so.1 at run time instead of
// including CUDA or c10/cuda headers, so it builds with every LibTorch (CPU-only, Debian's 1.13)
// and also reports a GPU that a CPU-only LibTorch cannot use.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qlc::harness {

struct CudaDriverDevice {
  int index = 0;
  std::string name;
  int capability_major = 0;
  int capability_minor = 0;
  int64_t total_memory_bytes = 0;
};

struct CudaDriverProbe {
  bool usable = false;     // the driver loaded and initialised
  std::string error;       // why not, when !usable
  int driver_version = 0;  // e.g. 12040 for 12.4 (0: unknown)
  std::vector<CudaDriverDevice> devices;
};

CudaDriverProbe probe_cuda_driver();

}  // namespace qlc::harness
