// The table of cast policies per stack value (see cast_policy.h for the sources).
#include "training/cast_policy.h"

#include <array>
#include <stdexcept>

namespace qlc::harness {
namespace {

// Field order: stack, bitsandbytes, peft, linear4bit_input_sets_compute_dtype,
// int8_backward_casts_grad, optimizers_on_cpu, placement, autocast_adapter_dtype,
// int8_lora_input_fp32, lora_output_cast_before_scaling.
constexpr std::array<CastPolicy, 6> kPolicies = {{
    {Stack::kCurrent, "0.50.x", "0.19-0.21", false, true, true,
     AdapterPlacement::kBaseComputeDtype, true, false, false},
    {Stack::kBnb049, "0.47.0-0.49.x", "0.19-0.21", false, true, false,
     AdapterPlacement::kBaseComputeDtype, true, false, false},
    {Stack::kBnb046, "0.45.0-0.46.x", "0.19-0.21", true, true, false,
     AdapterPlacement::kBaseComputeDtype, true, false, false},
    {Stack::kBnb044, "0.43.2-0.44.x", "0.19-0.21", true, false, false,
     AdapterPlacement::kBaseComputeDtype, true, false, false},
    {Stack::kPeft011, "0.50.x", "0.6.0-0.11.x", false, true, true,
     AdapterPlacement::kBaseWeightDtype, false, false, false},
    {Stack::kPeft05, "0.50.x", "0.4-0.5", false, true, true, AdapterPlacement::kFp32, false, true,
     true},
}};

bool is_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16 || t == at::kDouble;
}

}  // namespace

const CastPolicy& cast_policy(Stack stack) {
  for (const CastPolicy& p : kPolicies) {
    if (p.stack == stack) return p;
  }
  throw std::logic_error("no cast policy for stack " + to_string(stack));
}

at::ScalarType adapter_dtype_for(const CastPolicy& policy, AdapterDtype adapter,
                                 at::ScalarType base_weight, at::ScalarType base_compute,
                                 at::ScalarType model_dtype) {
  if (adapter == AdapterDtype::kModel) return model_dtype;  // cast by hand after get_peft_model
  at::ScalarType placed = at::kFloat;
  switch (policy.placement) {
    case AdapterPlacement::kFp32: placed = at::kFloat; break;
    case AdapterPlacement::kBaseWeightDtype:
      placed = is_float(base_weight) ? base_weight : at::kFloat;
      break;
    case AdapterPlacement::kBaseComputeDtype:
      placed = is_float(base_compute) ? base_compute : is_float(base_weight) ? base_weight : at::kFloat;
      break;
  }
  // cast_adapter_dtype upcasts fp16/bf16 adapters, unless the user turned it off (adapter=base);
  // releases without the flag keep the placement.
  const bool upcast = policy.autocast_adapter_dtype && adapter == AdapterDtype::kPeft;
  if (upcast && (placed == at::kHalf || placed == at::kBFloat16)) return at::kFloat;
  return placed;
}

std::string cpu_optimizer_error() {
  return "All input tensors need to be on the same GPU, but found some tensors to not be on a "
         "GPU:\n(bitsandbytes before 0.50 has no optimizer kernels for CPU tensors)";
}

}  // namespace qlc::harness
