// The frozen base of a linear layer, as bitsandbytes' modules compute it in training:
//  - Linear4bit: NF4/FP4 weight, dequantized on the fly in forward AND backward through a custom
//    autograd function (bitsandbytes' MatMul4Bit) that saves only the quantized state;
//  - Linear8bitLt (has_fp16_weights=False): frozen int8 CB and fp32 SCB;
//  - Dense: an unquantized weight in the parameter dtype (the `none` control, a plain nn.Linear).
// The casts are bitsandbytes' and no others, so dtype failures are the ones users meet.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "qlc/kernels/quant_state.h"
#include "qlc/kernels/tensor_api.h"
#include "training/dequant_buffers.h"

namespace qlc::harness {

class BaseLinear {
 public:
  virtual ~BaseLinear() = default;
  virtual at::Tensor forward(const at::Tensor& x) const = 0;
  // Bytes the frozen weight occupies, everything the layer keeps for it included (codes, scales,
  // code books), and the number of weights it stands for.
  virtual int64_t storage_bytes() const = 0;
  virtual int64_t numel() const = 0;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  // bitsandbytes layer (PEFT wraps it with its bnb LoRA variant) or plain nn.Linear.
  virtual bool quantized() const = 0;
};

// nn.Linear without bias, frozen: F.linear(x, W) with no cast at all.
class DenseLinear final : public BaseLinear {
 public:
  explicit DenseLinear(at::Tensor weight);
  at::Tensor forward(const at::Tensor& x) const override;
  int64_t storage_bytes() const override;
  int64_t numel() const override;
  int64_t in_features() const override { return weight_.size(1); }
  int64_t out_features() const override { return weight_.size(0); }
  bool quantized() const override { return false; }
  const at::Tensor& weight() const { return weight_; }

 private:
  at::Tensor weight_;
};

// bnb.nn.Linear4bit: forward = matmul_4bit(x.to(compute_dtype)).to(x's dtype).
class Linear4bit final : public BaseLinear {
 public:
  // `weight` [out, in] in the dtype it was loaded in (the state remembers it, as Params4bit does).
  // `input_sets_compute_dtype`: bitsandbytes <= 0.46 (compute_type_is_set = False): the first
  // forward's input, when fp32 or bf16, replaces the compute dtype for good (set_compute_type).
  // `buffers`: where forward and backward dequantize (a model shares one among its layers); the
  // layer makes its own when none is given.
  Linear4bit(const at::Tensor& weight, kernels::QuantType4 type, bool double_quant,
             at::ScalarType compute_dtype, int64_t blocksize = 64,
             bool input_sets_compute_dtype = false,
             c10::intrusive_ptr<DequantBuffers> buffers = {});
  at::Tensor forward(const at::Tensor& x) const override;
  int64_t storage_bytes() const override;
  int64_t numel() const override;
  int64_t in_features() const override { return state_->shape.at(1); }
  int64_t out_features() const override { return state_->shape.at(0); }
  bool quantized() const override { return true; }
  const kernels::QuantState4& state() const { return *state_; }
  // The compute dtype now (after the first forward where the input may have set it).
  at::ScalarType compute_dtype() const { return compute_dtype_; }
  // Whether a forward may still replace it (bitsandbytes <= 0.46 before its first forward).
  bool compute_dtype_pending() const { return !compute_type_is_set_; }

 private:
  std::shared_ptr<const kernels::QuantState4> state_;
  c10::intrusive_ptr<DequantBuffers> buffers_;
  mutable at::ScalarType compute_dtype_;
  mutable bool compute_type_is_set_;
};

// bitsandbytes' MatMul4Bit: y = linear(x, dequantize_4bit(state, x.dtype)); backward computes only
// grad_x = grad_y @ dequantize_4bit(state).to(grad_y.dtype). Saves the state's tensors, never a
// dequantized weight. `state` must outlive the graph (the layer owns it). With `buffers`, both
// dequantize into them (same bits) instead of allocating; without, each allocates.
at::Tensor matmul_4bit(const at::Tensor& x, const std::shared_ptr<const kernels::QuantState4>& state,
                       const c10::intrusive_ptr<DequantBuffers>& buffers = {});

// For tests: what the graph node of matmul_4bit's `output` keeps for backward. Throws
// std::invalid_argument when `output` was not made by matmul_4bit with a grad-requiring input.
std::vector<at::Tensor> matmul_4bit_saved_tensors(const at::Tensor& output);

// Which of bitsandbytes' two int8 autograd functions runs (bnb.matmul picks by device).
enum class Int8Path {
  kDequantizeMatmul,  // MatMul8bitFp: bitsandbytes' choice on CPU/XPU in training
  kLlmInt8,           // MatMul8bitLt: fp16 input cast, outlier columns (threshold), int8 GEMM
};
Int8Path int8_path_for_device(const at::Device& device);

// bnb.nn.Linear8bitLt (has_fp16_weights=False, threshold 6.0 as transformers passes): no input cast
// of its own; the output has x's dtype (the product's dtype under autocast).
class Linear8bitLt final : public BaseLinear {
 public:
  // `backward_casts_grad`: bitsandbytes >= 0.45 casts grad_output to x's dtype in backward;
  // <= 0.44 multiplies it as it comes (an autocast output meets x's dtype there).
  // `buffers` as for Linear4bit.
  Linear8bitLt(const at::Tensor& weight, Int8Path path,
               double threshold = kernels::kInt8OutlierThreshold, bool backward_casts_grad = true,
               c10::intrusive_ptr<DequantBuffers> buffers = {});
  at::Tensor forward(const at::Tensor& x) const override;
  int64_t storage_bytes() const override;
  int64_t numel() const override;
  int64_t in_features() const override { return weight_->cb.size(1); }
  int64_t out_features() const override { return weight_->cb.size(0); }
  bool quantized() const override { return true; }
  const kernels::Int8Weight& weight() const { return *weight_; }
  Int8Path path() const { return path_; }

 private:
  std::shared_ptr<const kernels::Int8Weight> weight_;
  Int8Path path_;
  double threshold_;
  bool backward_casts_grad_;
  c10::intrusive_ptr<DequantBuffers> buffers_;
};

// The two int8 autograd functions; both backward as grad_x = grad_y.to(x.dtype) @
// (CB.to(x.dtype) * (SCB / 127)) (without the cast when !backward_casts_grad). Like bitsandbytes
// they keep x for backward (ctx.A). `buffers` as for matmul_4bit.
at::Tensor matmul_8bit(const at::Tensor& x, const std::shared_ptr<const kernels::Int8Weight>& weight,
                       Int8Path path, double threshold, bool backward_casts_grad = true,
                       const c10::intrusive_ptr<DequantBuffers>& buffers = {});

}  // namespace qlc::harness
