// The dtype audit: the "detection" half of the rules. Before the first training step it walks the
// case's model as it would be built (modules, LoRA adapters, quantization states, optimizer
// states) and the device's kernels, and lists every place where dtypes meet: which tensor, which
// dtype, what it meets, and what goes wrong there (empty when the library casts and it works).
// Covered: missing matrix-product kernels, adapters vs base compute dtype, optimizer-state eps,
// trainable dtypes under amp=fp16's GradScaler, a bf16 model under fp16 autocast, reentrant
// checkpointing without input grads, and (where activations pass through fp16: the model dtype,
// a 4-bit compute dtype or autocast) every linear input above fp16's 65504 in an fp32 forward
// pass of the same model.
#pragma once

#include <string>
#include <vector>

#include "qlc/harness/case.h"

namespace qlc::harness {

struct AuditFinding {
  std::string tensor;   // e.g. "model.layers.0.self_attn.q_proj.lora_A.weight", "optimizer states"
  std::string dtype;    // fp32 fp16 bf16 (or a storage format: nf4, int8, 8bit)
  std::string meets;    // what it meets, e.g. "the base layer's output in bf16 (PEFT casts back)"
  std::string problem;  // the failure it leads to; empty: consistent
};

// Builds the case's model in `work_dir` (its checkpoint is written there) without training it.
// A model that cannot even be built is one finding with the error as its problem.
std::vector<AuditFinding> audit_case(const Case& c, const RunSettings& settings,
                                     const std::string& work_dir);

}  // namespace qlc::harness
