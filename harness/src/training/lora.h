// LoRA adapters with PEFT's semantics (peft/tuners/lora: layer.py Linear, bnb.py Linear4bit and
// Linear8bitLt), autocast off:
//   result = base(x)                                  (a Linear4bit's result is cloned first)
//   x      = x.to(lora_A.weight.dtype)                (only when the dtypes differ)
//   out    = lora_B(lora_A(dropout(x))) * alpha / r
//   bnb base:   result = result + out.to(result.dtype)
//   plain base: result = (result + out).to(result's dtype)
// A is kaiming-uniform (a = sqrt(5): bound 1/sqrt(in_features)), B zero, both drawn in fp32 and
// stored in the adapter dtype; dropout is nn.Dropout's CPU arithmetic with a seeded generator.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>

#include "training/quantized_linear.h"

namespace qlc::harness {

struct LoraOptions {
  int64_t rank = 8;
  double alpha = 16.0;
  double dropout = 0.05;
  at::ScalarType dtype = at::kFloat;  // the adapters' dtype
};

class LoraLinear {
 public:
  // `init_seed` draws A; `dropout_generator` (on the adapters' device) draws the dropout masks.
  LoraLinear(std::unique_ptr<BaseLinear> base, const LoraOptions& options, const at::Device& device,
             uint64_t init_seed, at::Generator dropout_generator);

  at::Tensor forward(const at::Tensor& x, bool training) const;

  const BaseLinear& base() const { return *base_; }
  at::Tensor& lora_a() { return lora_a_; }  // [r, in], trainable
  at::Tensor& lora_b() { return lora_b_; }  // [out, r], trainable
  double scaling() const { return scaling_; }

 private:
  at::Tensor dropout(const at::Tensor& x, bool training) const;

  std::unique_ptr<BaseLinear> base_;
  at::Tensor lora_a_;
  at::Tensor lora_b_;
  double scaling_;
  double dropout_p_;
  at::Generator generator_;
};

}  // namespace qlc::harness
