#include "qlc/harness/shard.h"

#include <stdexcept>
#include <string>

namespace qlc::harness {
namespace {

// Per model preset, relative to tiny = 1: a case's fixed part (worker start, checkpoint, warm-up:
// counted as one tiny-step budget) plus its training steps, which scale with the linear layers'
// multiply-adds per step (tokens x linear weights, training/model.cc's presets):
//   tiny, outlier   524,288 weights x   256 tokens = 1.34e8   -> 1 + 1    = 2
//   small        17,039,360 weights x   512 tokens = 8.72e9   -> 1 + 65   = 66
//   7b-layer    333,447,168 weights x   512 tokens = 1.71e11  -> 1 + 1272 = 1273
std::int64_t preset_weight(ModelPreset m) {
  switch (m) {
    case ModelPreset::kTiny:
    case ModelPreset::kOutlier: return 2;
    case ModelPreset::kSmall: return 66;
    case ModelPreset::k7bLayer: return 1273;
  }
  throw std::invalid_argument("unknown model preset");
}

// Per weight format, in percent of the unquantized case: the median wall time of the `ok` cases
// of cases/core.yaml (`qlora-compat run`, tiny, 2 CPU cores, 33 cases each): none 0.83 s,
// fp4 1.14 s, fp4-dq 1.17 s, int8 0.91 s. nf4 runs the same dequantize-in-forward-and-backward
// path as fp4 (only the code book differs) and is taken equal to it (its own figure was measured
// on a loaded machine). Rounded: the balance needs the ratios, not the seconds.
std::int64_t format_percent(WeightFormat w, bool double_quant) {
  switch (w) {
    case WeightFormat::kNone: return 100;
    case WeightFormat::kNf4:
    case WeightFormat::kFp4: return double_quant ? 145 : 140;
    case WeightFormat::kInt8: return 110;
  }
  throw std::invalid_argument("unknown weight format");
}

// Per AMP mode, in percent (an estimate, not yet measured): autocast casts every matmul's inputs
// once more per forward and backward; fp16 AMP adds the GradScaler's unscale and inf check over
// every gradient.
std::int64_t amp_percent(Amp a) {
  switch (a) {
    case Amp::kNone: return 100;
    case Amp::kBf16: return 110;
    case Amp::kFp16: return 120;
  }
  throw std::invalid_argument("unknown amp mode");
}

}  // namespace

std::int64_t expected_cost(const Case& c) {
  // 2 (tiny) x 100% x 100% / 2 = 100 units; exact integer arithmetic, so every machine agrees.
  return preset_weight(c.model) * format_percent(c.weights, c.double_quant) * amp_percent(c.amp) /
         200;
}

std::vector<int> shard_assignment(const std::vector<Case>& cases, int count) {
  if (count < 1) throw std::invalid_argument("bad shard count " + std::to_string(count));
  std::vector<std::int64_t> load(static_cast<std::size_t>(count), 0);
  std::vector<int> out;
  out.reserve(cases.size());
  for (const Case& c : cases) {
    std::size_t lightest = 0;
    for (std::size_t s = 1; s < load.size(); ++s) {
      if (load[s] < load[lightest]) lightest = s;
    }
    load[lightest] += expected_cost(c);
    out.push_back(static_cast<int>(lightest) + 1);
  }
  return out;
}

std::vector<Case> shard_cases(const std::vector<Case>& cases, int index, int count) {
  if (count < 1 || index < 1 || index > count) {
    throw std::invalid_argument("bad shard " + std::to_string(index) + "/" + std::to_string(count) +
                                " (expected i/n with 1 <= i <= n)");
  }
  const std::vector<int> shard = shard_assignment(cases, count);
  std::vector<Case> out;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    if (shard[i] == index) out.push_back(cases[i]);
  }
  return out;
}

}  // namespace qlc::harness
