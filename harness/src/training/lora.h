// LoRA adapters with PEFT's semantics (peft/tuners/lora: layer.py Linear, bnb.py Linear4bit and
// Linear8bitLt):
//   result = base(x)                                  (a Linear4bit's result is cloned first)
//   x      = x.to(lora_A.weight.dtype)                (only when the dtypes differ)
//   out    = lora_B(lora_A(dropout(x))) * alpha / r
//   bnb base:   result = result + out.to(result.dtype)
//   plain base: result = (result + out).to(result's dtype)
// The bnb layers skip both casts when torch.is_autocast_enabled() (CUDA autocast: cast_io false).
// PEFT <= 0.5 (cast_policy.h) cast an int8 layer's input to fp32 instead of the adapter dtype and
// the branch to the result dtype before scaling.
// A is kaiming-uniform (a = sqrt(5): bound 1/sqrt(in_features)), B zero, both drawn in fp32 and
// stored in the adapter dtype; dropout is nn.Dropout's CPU arithmetic with a seeded generator.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "training/quantized_linear.h"

namespace qlc::harness {

struct LoraOptions {
  int64_t rank = 8;
  double alpha = 16.0;
  double dropout = 0.05;
  at::ScalarType dtype = at::kFloat;  // the adapters' dtype
  bool cast_io = true;                     // bnb layers: cast x and the branch (no CUDA autocast)
  bool int8_input_fp32 = false;            // PEFT <= 0.5 over an int8 base: x.float()
  bool cast_output_before_scaling = false;  // PEFT <= 0.5 bnb layers: B(A(x)).to(dtype) * scaling
};

// lora_A's initial values [rank, in] in fp32: kaiming-uniform (a = sqrt(5)), drawn from `seed` by
// our own generator, so that a peer can be given the same start (export.h).
std::vector<float> lora_a_init(int64_t rank, int64_t in_features, uint64_t seed);

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
  // Records the largest |x| reaching forward() from now on (reset here; off again with false): the
  // dtype audit's look at activations beyond fp16's range.
  void track_input_peak(bool on) {
    track_peak_ = on;
    input_peak_ = 0.0;
  }
  double input_peak() const { return input_peak_; }

 private:
  at::Tensor dropout(const at::Tensor& x, bool training) const;

  std::unique_ptr<BaseLinear> base_;
  at::Tensor lora_a_;
  at::Tensor lora_b_;
  double scaling_;
  double dropout_p_;
  bool cast_io_;
  bool int8_input_fp32_;
  bool cast_output_before_scaling_;
  at::Generator generator_;
  bool track_peak_ = false;
  mutable double input_peak_ = 0.0;
};

}  // namespace qlc::harness
