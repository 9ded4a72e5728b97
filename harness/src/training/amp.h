// Mixed precision as the Trainer's precision flags run it (accelerate on a GPU; a plain loop with
// torch.autocast + torch.amp.GradScaler on any device):
//   amp=fp16  forward under autocast(fp16), loss scaled by a GradScaler: unscale (refusing fp16
//             gradients), skip the step on inf/NaN gradients, update the scale;
//   amp=bf16  forward under autocast(bf16), no scaler;
//   amp=none  neither.
// Autocast is LibTorch's own (its dispatch key, its op lists, its dtype support on the device);
// backward runs outside it, as loss.backward() does after the `with` block.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "qlc/harness/case.h"

namespace qlc::harness {

// torch.autocast(device_type, dtype) as a scope; nothing when `dtype` is empty.
class AutocastGuard {
 public:
  AutocastGuard(c10::DeviceType device_type, std::optional<at::ScalarType> dtype);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  c10::DeviceType device_type_;
  bool active_ = false;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
  bool previous_cache_ = true;
};

// The autocast dtype in effect on `device_type` (empty when autocast is off there): what a
// checkpointed block records in forward and re-enters for its recomputation.
std::optional<at::ScalarType> active_autocast_dtype(c10::DeviceType device_type);

// The autocast dtype of a case's amp value (empty for none).
std::optional<at::ScalarType> autocast_dtype(Amp amp);

// torch.amp.GradScaler with its defaults (init_scale 2^16, growth 2, backoff 0.5, interval 2000).
class GradScaler {
 public:
  explicit GradScaler(const at::Device& device);
  at::Tensor scale(const at::Tensor& loss) const;  // loss * scale
  // unscale_: raises "Attempting to unscale FP16 gradients." (ValueError in PyTorch) for an fp16
  // gradient, else divides every gradient by the scale with ATen's
  // _amp_foreach_non_finite_check_and_unscale_ (per dtype group) and returns whether any was
  // inf/NaN (step() then skips the optimizer step).
  bool unscale(const std::vector<at::Tensor>& params);
  // update(): _amp_update_scale_ with the found_inf of the last unscale.
  void update();
  double current_scale() const;

 private:
  at::Tensor scale_;           // fp32 [1]
  at::Tensor growth_tracker_;  // int32 [1]
  at::Tensor found_inf_;       // fp32 [1] of the last unscale
};

}  // namespace qlc::harness
