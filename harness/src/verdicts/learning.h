// Did the loss go down? The `no_learning` criterion, on the per-step losses of one fixed batch.
//
// Window: the mean of the first k and of the last k losses, k = 2 (k = 1 below 4 steps), so one
// step's dropout wobble cannot decide alone. Margin: the last window must be below the first by
// more than kRelativeMargin of the first. Derivation: on a fixed batch the loss changes only
// through the updates (and dropout, which acts on the LoRA branch only: while B is 0 the branch is
// exactly 0, so vanished updates give bit-identical losses). The rounding noise of an fp32 loss
// over bf16 logits is at most 2^-9 * |logit| per token (|logit| ~ 0.3 for the random base), about
// 2^-9 * 0.3 / sqrt(256 tokens) ~ 4e-5 absolute, i.e. < 1e-5 of a loss near ln(256) = 5.5; a margin
// of 1e-4 relative is ten times that, and far below what 8 steps at lr 1e-3 learn in fp32 (the
// tiny preset drops by about 10% there: runner_test.cc).
#pragma once

#include <string>
#include <vector>

namespace qlc::harness {

constexpr double kNoLearningRelativeMargin = 1e-4;

struct LearningVerdict {
  bool learned = false;
  int window = 0;        // k
  double first = 0.0;    // mean of the first k losses
  double last = 0.0;     // mean of the last k losses
  double required = 0.0; // the drop needed (margin, absolute)
  std::string summary;   // "loss 5.5452 -> 5.0102 (first/last 2 steps; needs a drop > 0.00055)"
};

// Needs at least two finite losses (throws std::invalid_argument otherwise).
LearningVerdict judge_learning(const std::vector<double>& losses);

}  // namespace qlc::harness
