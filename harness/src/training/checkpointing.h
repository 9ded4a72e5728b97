// Gradient checkpointing of a decoder layer, as torch.utils.checkpoint does it (transformers wraps
// each decoder layer in it when gradient_checkpointing is on; LibTorch has no checkpoint API):
// forward runs the block without recording a graph; backward re-runs it with the dropout generator
// and the autocast state of the forward, then back-propagates through the recomputation. The
// parameters inside the block (the adapters) get their gradients from that inner backward.
//
//   reentrant      an autograd function of the block's input only (use_reentrant=True): when the
//                  input does not require grad, there is no graph node at all, so nothing inside
//                  the block gets a gradient and, with every other parameter frozen, loss.backward()
//                  fails with "element 0 of tensors does not require grad and does not have a
//                  grad_fn" (the failure prepare_model_for_kbit_training's enable_input_require_grads
//                  exists to prevent);
//   non-reentrant  use_reentrant=False keeps a graph whatever its inputs require; emulated by an
//                  always-present anchor input.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <functional>

#include "qlc/harness/case.h"

namespace qlc::harness {

struct CheckpointedBlock {
  std::function<at::Tensor(const at::Tensor&)> forward;  // the layer, hidden -> hidden
  at::Generator rng;  // the generator its dropout draws from (state restored for the recompute)
};

// The block applied to `hidden` with `mode`'s checkpointing (kOff: a plain call). `block` must
// outlive the graph of the result (the model owns it; each step's graph ends with its backward).
at::Tensor run_checkpointed(const CheckpointedBlock& block, const at::Tensor& hidden,
                            GradCheckpointing mode);

}  // namespace qlc::harness
