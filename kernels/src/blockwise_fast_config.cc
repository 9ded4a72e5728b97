#include "blockwise_fast_kernels.h"

namespace qlc::kernels {

CpuIsa fast_kernel_isa(const FastConfig& config) {
  const CpuIsa usable = std::min(config.isa, detected_cpu_isa());
  // Kernels without AVX-512 code run their AVX2 code at kAvx512 (callers test isa >= kAvx2).
  if (!QLC_FAST_HAVE_AVX2) return CpuIsa::kScalar;
  return usable;
}

}  // namespace qlc::kernels
