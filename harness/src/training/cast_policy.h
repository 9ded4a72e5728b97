// The casts of one `stack` value: which bitsandbytes and PEFT releases a case's step follows. This
// table is the one place where a library release changes what the emulated layers do; the layers
// read the flags, never the stack value itself.
//
// Each value differs from `current` in one library, so that a failure names its cause. The source
// lines each flag follows (file @ tag, read in the released wheels):
//
//   current    bitsandbytes 0.50.x, PEFT 0.19-0.21 (0.12-0.18 differ only for adapter=base over
//              4-bit layers: fp32 there, as they ignore Linear4bit.compute_dtype)
//   bnb-0.49   bitsandbytes 0.47.0-0.49.x: 8-bit (and 32-bit) optimizer kernels are CUDA-only
//              (backends/cuda/ops.py @0.49.2 registers optimizer_update_8bit_blockwise for "cuda"
//              only; the CPU kernels came with 0.50.0, bitsandbytes#1901)
//   bnb-0.46   bitsandbytes 0.45.0-0.46.x: also Linear4bit.__init__ sets compute_type_is_set =
//              False, so the first forward's fp32/bf16 input replaces bnb_4bit_compute_dtype
//              (nn/modules.py set_compute_type @0.46.1; fixed in 0.47.0, bitsandbytes#1623)
//   bnb-0.44   bitsandbytes 0.43.2-0.44.x: also MatMul8bitLt.backward multiplies grad_output
//              without casting it to A's dtype (autograd/_functions.py @0.44.1:
//              torch.matmul(grad_output, CB); 0.45.0 casts, bitsandbytes#1401)
//   peft-0.11  PEFT 0.6.0-0.11.x: adapters are moved to the base weight's dtype when it is a float
//              (tuners/lora/layer.py update_layer @v0.11.1: self.to(weight.device,
//              dtype=weight.dtype)), no autocast_adapter_dtype (added in 0.12.0, peft#1706)
//   peft-0.5   PEFT 0.4-0.5: adapters stay fp32 (update_layer: self.to(self.weight.device)); the
//              8-bit LoRA casts its input to fp32 (tuners/lora.py Linear8bitLt.forward @v0.5.0:
//              x = x.float()) and the LoRA output to the result dtype before scaling; fixed in
//              0.6.0 (peft#874)
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "qlc/harness/case.h"

namespace qlc::harness {

// Where PEFT puts new adapters (before any autocast_adapter_dtype upcast).
enum class AdapterPlacement {
  kFp32,              // nn.Linear's default dtype, never moved to another (PEFT <= 0.5)
  kBaseWeightDtype,   // the base layer's weight dtype when it is a float, else fp32 (0.6-0.18)
  kBaseComputeDtype,  // as kBaseWeightDtype, but a Linear4bit's compute_dtype (0.19+)
};

struct CastPolicy {
  Stack stack;
  const char* bitsandbytes;  // the releases the value stands for
  const char* peft;
  // bitsandbytes
  bool linear4bit_input_sets_compute_dtype;  // <= 0.46: first input fp32/bf16 -> compute dtype
  bool int8_backward_casts_grad;             // >= 0.45: grad_output.to(A.dtype) in backward
  // What bitsandbytes raises on a CPU-only machine where it has no CPU code (nullptr: it has).
  // Observed with the releases installed beside the venv's CPU-only torch (compare_peer.py
  // --stack); the first line is the library's, the second says why.
  const char* cpu_load_error;                // <= 0.44: 4/8-bit weights (from_pretrained)
  const char* cpu_optimizer_32bit_error;     // <= 0.49: bnb's 32-bit update (AdamW, and AdamW8bit
                                             // on tensors under 4096 elements)
  const char* cpu_optimizer_8bit_error;      // <= 0.49: bnb's 8-bit blockwise update
  // PEFT
  AdapterPlacement placement;
  bool autocast_adapter_dtype;               // >= 0.12: fp16/bf16 adapters upcast to fp32 unless
                                             // get_peft_model(..., autocast_adapter_dtype=False)
  bool int8_lora_input_fp32;                 // <= 0.5: x.float() before an int8 layer's LoRA
  bool lora_output_cast_before_scaling;      // <= 0.5: B(A(x)).to(dtype) * scaling (bnb layers)
};

const CastPolicy& cast_policy(Stack stack);

// The adapters' dtype for a layer: the case's adapter axis resolved with the stack's placement.
// `base_weight` is the base layer's stored weight dtype (uint8/int8 for quantized ones),
// `base_compute` a Linear4bit's compute dtype (the model dtype otherwise), `model_dtype` the
// case's param_dtype (the hand cast of adapter=model).
at::ScalarType adapter_dtype_for(const CastPolicy& policy, AdapterDtype adapter,
                                 at::ScalarType base_weight, at::ScalarType base_compute,
                                 at::ScalarType model_dtype);


}  // namespace qlc::harness
