// The table of cast policies per stack value (see cast_policy.h for the sources).
#include "training/cast_policy.h"

#include <array>
#include <stdexcept>

namespace qlc::harness {
namespace {

// bitsandbytes on a CPU-only machine, per release (observed: 0.44.1, 0.46.1, 0.49.2 from PyPI).
// 0.45-0.49: is_on_gpu() raises "All input tensors need to be on the same GPU" for the 8-bit
// update; for the 32-bit one its message formats unorm_vec.shape with unorm_vec None (AdamW keeps
// no update norm), so the user sees the AttributeError instead.
constexpr const char* kNoCpuBackend =
    "CUDA is required but not available for bitsandbytes. Please consider installing the "
    "multi-platform enabled version of bitsandbytes, which is currently a work in progress.\n"
    "(bitsandbytes 0.44 has no CPU code for 4-bit or 8-bit weights; its CPU backend came in 0.45)";
constexpr const char* kNo32bitSymbols =
    "name 'str2optimizer32bit' is not defined\n"
    "(bitsandbytes 0.44 built without GPU support defines no 32-bit optimizer kernels)";
constexpr const char* kNo8bitOnCpuTorch =
    "Torch not compiled with CUDA enabled\n"
    "(bitsandbytes 0.44's 8-bit optimizer step asks for a CUDA device; seen with a CPU-only torch)";
constexpr const char* kIsOnGpuFormatsNone =
    "'NoneType' object has no attribute 'shape'\n"
    "(bitsandbytes 0.45-0.49: is_on_gpu() refuses CPU tensors, and its message fails on the 32-bit "
    "update's absent unorm_vec)";
constexpr const char* kIsOnGpu =
    "All input tensors need to be on the same GPU, but found some tensors to not be on a GPU:\n"
    "(bitsandbytes before 0.50 has no optimizer kernels for CPU tensors)";

// Field order: stack, bitsandbytes, peft, linear4bit_input_sets_compute_dtype,
// int8_backward_casts_grad, cpu_load_error, cpu_optimizer_32bit_error, cpu_optimizer_8bit_error,
// placement, autocast_adapter_dtype, int8_lora_input_fp32, lora_output_cast_before_scaling.
constexpr std::array<CastPolicy, 6> kPolicies = {{
    {Stack::kCurrent, "0.50.x", "0.19-0.21", false, true, nullptr, nullptr, nullptr,
     AdapterPlacement::kBaseComputeDtype, true, false, false},
    {Stack::kBnb049, "0.47.0-0.49.x", "0.19-0.21", false, true, nullptr, kIsOnGpuFormatsNone,
     kIsOnGpu, AdapterPlacement::kBaseComputeDtype, true, false, false},
    {Stack::kBnb046, "0.45.0-0.46.x", "0.19-0.21", true, true, nullptr, kIsOnGpuFormatsNone,
     kIsOnGpu, AdapterPlacement::kBaseComputeDtype, true, false, false},
    {Stack::kBnb044, "0.43.2-0.44.x", "0.19-0.21", true, false, kNoCpuBackend, kNo32bitSymbols,
     kNo8bitOnCpuTorch, AdapterPlacement::kBaseComputeDtype, true, false, false},
    {Stack::kPeft011, "0.50.x", "0.6.0-0.11.x", false, true, nullptr, nullptr, nullptr,
     AdapterPlacement::kBaseWeightDtype, false, false, false},
    {Stack::kPeft05, "0.50.x", "0.4-0.5", false, true, nullptr, nullptr, nullptr,
     AdapterPlacement::kFp32, false, true, true},
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

}  // namespace qlc::harness
