// The permutation task (see synthetic_task.h).
#include "training/synthetic_task.h"

#include <ATen/ATen.h>

#include <numeric>
#include <stdexcept>
#include <utility>

#include "training/rng.h"

namespace qlc::harness {

SyntheticTask make_synthetic_task(int64_t vocab_size, int64_t batch_size, int64_t seq_len,
                                  uint64_t seed) {
  if (vocab_size < 2 || batch_size < 1 || seq_len < 1) {
    throw std::invalid_argument("synthetic task needs vocab >= 2, batch >= 1, seq_len >= 1");
  }
  SyntheticTask task;
  // Sattolo's shuffle: a uniformly random permutation with a single cycle (no fixed points).
  task.permutation.resize(static_cast<size_t>(vocab_size));
  std::iota(task.permutation.begin(), task.permutation.end(), int64_t{0});
  SplitMix64 rng(stream_seed(seed, "task.permutation"));
  for (int64_t i = vocab_size - 1; i > 0; --i) {
    std::swap(task.permutation[static_cast<size_t>(i)],
              task.permutation[static_cast<size_t>(rng.below(i))]);
  }
  SplitMix64 starts(stream_seed(seed, "task.batch"));
  task.input_ids = at::empty({batch_size, seq_len}, at::TensorOptions().dtype(at::kLong));
  task.labels = at::empty({batch_size, seq_len}, at::TensorOptions().dtype(at::kLong));
  int64_t* in = task.input_ids.data_ptr<int64_t>();
  int64_t* out = task.labels.data_ptr<int64_t>();
  for (int64_t b = 0; b < batch_size; ++b) {
    int64_t token = starts.below(vocab_size);
    for (int64_t t = 0; t < seq_len; ++t) {
      in[b * seq_len + t] = token;
      token = task.permutation[static_cast<size_t>(token)];
      out[b * seq_len + t] = token;
    }
  }
  return task;
}

}  // namespace qlc::harness
