// PEFT's LoRA layer over a frozen base (see lora.h).
#include "training/lora.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "training/rng.h"

namespace qlc::harness {

std::vector<float> lora_a_init(int64_t rank, int64_t in_features, uint64_t seed) {
  // nn.init.kaiming_uniform_(a=sqrt(5)): gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / fan_in)
  // = 1 / sqrt(fan_in).
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  std::vector<float> a(static_cast<size_t>(rank * in_features));
  SplitMix64 rng(seed);
  for (float& v : a) v = static_cast<float>(rng.uniform_symmetric(bound));
  return a;
}

LoraLinear::LoraLinear(std::unique_ptr<BaseLinear> base, const LoraOptions& options,
                       const at::Device& device, uint64_t init_seed, at::Generator dropout_generator)
    : base_(std::move(base)),
      scaling_(options.alpha / static_cast<double>(options.rank)),
      dropout_p_(options.dropout),
      cast_io_(options.cast_io),
      int8_input_fp32_(options.int8_input_fp32),
      cast_output_before_scaling_(options.cast_output_before_scaling),
      generator_(std::move(dropout_generator)) {
  if (options.rank < 1) throw std::invalid_argument("LoRA rank must be >= 1");
  if (!(options.dropout >= 0.0 && options.dropout <= 1.0)) {
    throw std::invalid_argument("LoRA dropout must be in [0, 1]");
  }
  const int64_t in = base_->in_features();
  const int64_t out = base_->out_features();
  const int64_t r = options.rank;
  std::vector<float> a = lora_a_init(r, in, init_seed);
  const at::TensorOptions f32 = at::TensorOptions().dtype(at::kFloat);
  lora_a_ = at::from_blob(a.data(), {r, in}, f32).to(device, options.dtype, false, /*copy=*/true);
  lora_b_ = at::zeros({out, r}, f32).to(device, options.dtype);
  lora_a_.set_requires_grad(true);
  lora_b_.set_requires_grad(true);
}

// nn.Dropout on CPU (_dropout_impl): noise = empty_like(x).bernoulli_(1 - p); noise.div_(1 - p);
// x * noise, in x's dtype, so a dtype without a bernoulli kernel fails here as it does in PEFT.
at::Tensor LoraLinear::dropout(const at::Tensor& x, bool training) const {
  if (dropout_p_ == 0.0 || !training) return x;  // nn.Identity, or eval mode
  if (dropout_p_ == 1.0) return x * at::zeros({}, x.options());
  at::Tensor noise = at::empty_like(x);
  noise.bernoulli_(1.0 - dropout_p_, generator_);
  noise.div_(1.0 - dropout_p_);
  return x * noise;
}

at::Tensor LoraLinear::forward(const at::Tensor& x, bool training) const {
  if (track_peak_) {
    input_peak_ = std::max(input_peak_, x.detach().to(at::kFloat).abs().max().item<double>());
  }
  at::Tensor result = base_->forward(x);
  const at::ScalarType result_dtype = result.scalar_type();
  const auto branch = [&](const at::Tensor& input) {
    return at::linear(at::linear(dropout(input, training), lora_a_), lora_b_);
  };
  if (!base_->quantized()) {
    // layer.py Linear: _cast_input_dtype always (no autocast check), add, cast the sum back.
    const at::Tensor xa = x.scalar_type() == lora_a_.scalar_type() ? x : x.to(lora_a_.scalar_type());
    return (result + branch(xa) * scaling_).to(result_dtype);
  }
  // bnb.py: Linear4bit clones the base's result first ("for 4bit, we need to defensively clone").
  if (dynamic_cast<const Linear4bit*>(base_.get()) != nullptr) result = result.clone();
  if (!cast_io_) return result + branch(x) * scaling_;
  at::ScalarType input_dtype = lora_a_.scalar_type();
  if (int8_input_fp32_ && dynamic_cast<const Linear8bitLt*>(base_.get()) != nullptr) {
    input_dtype = at::kFloat;  // PEFT <= 0.5: `if x.dtype != torch.float32: x = x.float()`
  }
  const at::Tensor xa = x.scalar_type() == input_dtype ? x : x.to(input_dtype);
  if (cast_output_before_scaling_) return result + branch(xa).to(result_dtype) * scaling_;
  return result + (branch(xa) * scaling_).to(result_dtype);
}

}  // namespace qlc::harness
