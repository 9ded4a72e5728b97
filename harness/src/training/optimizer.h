// AdamW for at::Tensor parameters over the kernels' raw-buffer steps (adamw.h):
//   kAdamWFp32       bnb.optim.AdamW (32-bit states whatever the parameter dtype)
//   kAdamWParamDtype torch.optim.AdamW (states zeros_like(p): in the parameter dtype)
//   kAdamW8bit       bnb.optim.AdamW8bit (8-bit blockwise states from 4096 elements, fp32 below)
//   kPagedAdamW8bit  bnb.optim.PagedAdamW8bit (managed memory on CUDA; on CPU = AdamW8bit, as
//                    bitsandbytes falls back)
// States are created at a parameter's first step, as both libraries do. Before bitsandbytes 0.50 its
// optimizers (every kind but kAdamWParamDtype) had no CPU kernels: their first step on a CPU tensor
// raises the release's message for the update it takes (cast_policy.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "qlc/harness/case.h"
#include "qlc/kernels/adamw.h"

namespace qlc::harness {

// What bitsandbytes raises when its update meets a CPU tensor; nullptr where it has CPU kernels.
struct BnbCpuOptimizerErrors {
  const char* update_32bit = nullptr;
  const char* update_8bit = nullptr;
};

class AdamW {
 public:
  AdamW(std::vector<at::Tensor> params, OptimizerKind kind, const kernels::AdamWConfig& config,
        BnbCpuOptimizerErrors bnb_cpu_errors = {});
  ~AdamW();
  AdamW(const AdamW&) = delete;
  AdamW& operator=(const AdamW&) = delete;

  // One update of every parameter that has a gradient (in place, through its data pointer).
  void step();
  // Gradients to None (set_to_none=True, the default of both libraries).
  void zero_grad();
  // Bytes of all states created so far (moments and their absmax).
  int64_t state_bytes() const;
  // The layout given to parameter i (after its first step).
  const kernels::AdamWStateLayout& layout(size_t i) const;

 private:
  struct ParamState;
  std::vector<std::unique_ptr<ParamState>> states_;
  OptimizerKind kind_;
  kernels::AdamWConfig config_;
  BnbCpuOptimizerErrors bnb_cpu_errors_;
};

}  // namespace qlc::harness
