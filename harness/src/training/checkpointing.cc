// torch.utils.checkpoint for one block (see checkpointing.h).
#include "training/checkpointing.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdint>
#include <optional>

#include "training/amp.h"

namespace qlc::harness {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class Checkpoint : public torch::autograd::Function<Checkpoint> {
 public:
  // `anchor` (non-reentrant only) requires grad, so that the node exists whatever `hidden` needs.
  // The block travels as its address: it outlives the graph (see run_checkpointed).
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& anchor,
                            int64_t block_address) {
    (void)anchor;
    const auto* block = reinterpret_cast<const CheckpointedBlock*>(block_address);
    ctx->saved_data["block"] = block_address;
    // preserve_rng_state=True: the recompute draws the forward's dropout masks.
    ctx->saved_data["rng"] = block->rng.get_state();
    // The recompute runs under the forward's autocast (CheckpointFunction's autocast kwargs).
    const std::optional<at::ScalarType> autocast = active_autocast_dtype(hidden.device().type());
    ctx->saved_data["autocast"] = autocast ? static_cast<int64_t>(*autocast) : int64_t{-1};
    ctx->save_for_backward({hidden});
    return block->forward(hidden);  // no graph: custom functions' forward records none
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto* block = reinterpret_cast<CheckpointedBlock*>(ctx->saved_data["block"].toInt());
    const at::Tensor hidden = ctx->get_saved_variables().at(0);
    const bool hidden_needs_grad = ctx->needs_input_grad(0);
    const at::Tensor input = hidden.detach().requires_grad_(hidden_needs_grad);
    const int64_t autocast = ctx->saved_data["autocast"].toInt();

    at::Tensor output;
    {
      const at::Tensor current_rng = block->rng.get_state();
      block->rng.set_state(ctx->saved_data["rng"].toTensor());
      at::AutoGradMode grad_mode(true);
      AutocastGuard guard(input.device().type(),
                          autocast < 0 ? std::nullopt
                                       : std::optional<at::ScalarType>(
                                             static_cast<at::ScalarType>(autocast)));
      output = block->forward(input);
      block->rng.set_state(current_rng);  // fork_rng: the generator continues from the forward
    }
    if (output.requires_grad()) {
      torch::autograd::backward({output}, {grad_outputs.at(0)});
    }
    return {hidden_needs_grad ? input.grad() : at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor run_checkpointed(const CheckpointedBlock& block, const at::Tensor& hidden,
                            GradCheckpointing mode) {
  if (mode == GradCheckpointing::kOff) return block.forward(hidden);
  // The anchor requires grad only for use_reentrant=False (an undefined tensor cannot stand in for
  // "no anchor": custom functions read every tensor argument's device).
  const at::Tensor anchor = at::empty({0}, hidden.options().dtype(at::kFloat))
                                .requires_grad_(mode == GradCheckpointing::kNonReentrant);
  return Checkpoint::apply(hidden, anchor, reinterpret_cast<int64_t>(&block));
}

}  // namespace qlc::harness
