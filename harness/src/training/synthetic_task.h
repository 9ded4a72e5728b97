// The synthetic next-token task the adapters learn: a fixed random cyclic permutation of the
// vocabulary, next token = perm[token]. Each sequence is a walk along the permutation from a
// random start, so every position's target is a function of its token alone and the frozen random
// base model cannot know it (its loss starts near ln(vocab)).
//
// One batch, drawn once from the seed, is trained on at every step (the "overfit one batch"
// check): the step-to-step change of the loss is then the effect of the updates alone, with no
// sampling noise, so a small no-learning margin separates "updates had an effect" from "they
// vanished" (see runner.cc). The walks follow a single cycle (Sattolo's shuffle), so the batch
// covers as many distinct (token -> next) pairs as it has positions, up to the vocabulary size.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace qlc::harness {

struct SyntheticTask {
  std::vector<int64_t> permutation;  // next token of token i
  at::Tensor input_ids;              // int64 [batch, seq_len] on CPU
  at::Tensor labels;                 // int64 [batch, seq_len]: permutation[input_ids]
};

SyntheticTask make_synthetic_task(int64_t vocab_size, int64_t batch_size, int64_t seq_len,
                                  uint64_t seed);

}  // namespace qlc::harness
