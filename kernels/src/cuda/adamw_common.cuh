// Private pieces shared by the AdamW launchers (adamw_8bit.cu, adamw_dense.cu) and the state
// allocator (state_allocator.cu).
#pragma once

#include "cuda_common.cuh"
#include "qlc/kernels/adamw.h"

namespace qlc::kernels::cuda::detail {

inline void check_step_args(int64_t n, const AdamWConfig& config, int64_t step, const char* what) {
  if (n < 0) throw std::invalid_argument(std::string(what) + ": negative element count");
  check_adamw_config(config, step);
}

// Moves managed pages to the current device ahead of a kernel, on `stream`; a no-op for memory
// that is not managed and on devices without concurrent managed access (e.g. under WSL), whose
// pages migrate on first touch. Defined in state_allocator.cu.
void prefetch_to_device(const void* ptr, size_t bytes, cudaStream_t stream);

}  // namespace qlc::kernels::cuda::detail
