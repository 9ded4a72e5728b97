#include "blockwise_fast_kernels.h"

namespace qlc::kernels {

CpuIsa fast_kernel_isa(const FastConfig& config) {
  const CpuIsa usable = std::min(config.isa, detected_cpu_isa());
  // No AVX-512 kernels yet: such CPUs run the AVX2 ones.
  return QLC_FAST_HAVE_AVX2 && usable >= CpuIsa::kAvx2 ? CpuIsa::kAvx2 : CpuIsa::kScalar;
}

}  // namespace qlc::kernels
