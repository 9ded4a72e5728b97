// bitsandbytes' frozen base layers and their autograd functions (see quantized_linear.h).
#include "training/quantized_linear.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <optional>
#include <stdexcept>
#include <vector>

#include "training/dequant_buffers.h"

namespace qlc::harness {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// ---- 4-bit -------------------------------------------------------------------------------------

// The state travels through the context as its own tensors plus scalars, so the graph holds the
// quantized bytes (as MatMul4Bit's ctx.tensors = (None, B) and ctx.state do) and nothing else.
void save_state(AutogradContext* ctx, const kernels::QuantState4& s) {
  variable_list tensors = {s.packed, s.absmax, s.code};
  if (s.nested) {
    tensors.push_back(s.nested->absmax2);
    tensors.push_back(s.nested->code);
    ctx->saved_data["nested_offset"] = static_cast<double>(s.nested->offset);
    ctx->saved_data["nested_blocksize"] = s.nested->blocksize;
  }
  ctx->save_for_backward(tensors);
  ctx->saved_data["shape"] = s.shape;
  ctx->saved_data["dtype"] = static_cast<int64_t>(s.dtype);
  ctx->saved_data["blocksize"] = s.blocksize;
  ctx->saved_data["quant_type"] = static_cast<int64_t>(s.quant_type);
}

kernels::QuantState4 restore_state(AutogradContext* ctx) {
  const variable_list saved = ctx->get_saved_variables();
  kernels::QuantState4 s;
  s.packed = saved.at(0);
  s.absmax = saved.at(1);
  s.code = saved.at(2);
  s.shape = ctx->saved_data["shape"].toIntVector();
  s.dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
  s.blocksize = ctx->saved_data["blocksize"].toInt();
  s.quant_type = static_cast<kernels::QuantType4>(ctx->saved_data["quant_type"].toInt());
  if (saved.size() == 5) {
    kernels::NestedAbsmax nested;
    nested.absmax2 = saved[3];
    nested.code = saved[4];
    nested.offset = static_cast<float>(ctx->saved_data["nested_offset"].toDouble());
    nested.blocksize = ctx->saved_data["nested_blocksize"].toInt();
    s.nested = std::move(nested);
  }
  return s;
}

// The buffers travel to backward in the context (null: every dequantization allocates).
void save_buffers(AutogradContext* ctx, const c10::intrusive_ptr<DequantBuffers>& buffers) {
  if (buffers) ctx->saved_data["buffers"] = c10::IValue::make_capsule(buffers);
}
c10::intrusive_ptr<DequantBuffers> restore_buffers(AutogradContext* ctx) {
  const auto it = ctx->saved_data.find("buffers");
  if (it == ctx->saved_data.end()) return {};
  return c10::dynamic_intrusive_pointer_cast<DequantBuffers>(it->second.toCapsule());
}

class MatMul4Bit : public torch::autograd::Function<MatMul4Bit> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            const std::shared_ptr<const kernels::QuantState4>& state,
                            const c10::intrusive_ptr<DequantBuffers>& buffers) {
    // gemm_4bit's default kernel: dequantize straight to A's dtype, then F.linear.
    at::Tensor out;
    if (buffers) {
      DequantBuffers::Lease lease(*buffers);
      const at::Tensor w = lease.get(state->shape, x.scalar_type(), state->packed.device());
      kernels::dequantize_4bit_out(*state, w);
      out = at::linear(x, w);
    } else {
      out = at::linear(x, kernels::dequantize_4bit(*state, x.scalar_type()));
    }
    save_state(ctx, *state);
    save_buffers(ctx, buffers);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const at::Tensor& grad = grad_outputs.at(0);
    at::Tensor grad_x;
    if (ctx->needs_input_grad(0)) {
      // Dequantized in the state's dtype, then cast: F.dequantize_4bit(B, state).to(grad.dtype).
      const kernels::QuantState4 state = restore_state(ctx);
      const c10::intrusive_ptr<DequantBuffers> buffers = restore_buffers(ctx);
      if (buffers) {
        DequantBuffers::Lease lease(*buffers);
        const at::Device device = state.packed.device();
        at::Tensor w = lease.get(state.shape, state.dtype, device);
        kernels::dequantize_4bit_out(state, w);
        if (grad.scalar_type() != state.dtype) {  // copy_ converts as .to() does
          w = lease.get(state.shape, grad.scalar_type(), device).copy_(w);
        }
        grad_x = at::matmul(grad, w);
      } else {
        grad_x = at::matmul(grad, kernels::dequantize_4bit(state).to(grad.scalar_type()));
      }
    }
    return {grad_x, at::Tensor(), at::Tensor()};
  }
};

// ---- int8 --------------------------------------------------------------------------------------

// CB.to(dtype).mul_(SCB.unsqueeze(1).mul(1.0 / 127.0)): scale first, one rounding to dtype; into
// a buffer of `lease` when there is one. The result lives as long as the lease.
at::Tensor dequantize_for(const at::Tensor& cb, const at::Tensor& scb, at::ScalarType dtype,
                          DequantBuffers::Lease* lease) {
  const kernels::Int8Weight w{cb, scb};
  if (lease == nullptr) return kernels::dequantize_int8_rowwise(w, dtype, kernels::Int8DequantOrder::kScaleFirst);
  const at::Tensor out = lease->get(cb.sizes(), dtype, cb.device());
  kernels::dequantize_int8_rowwise_out(w, out, kernels::Int8DequantOrder::kScaleFirst);
  return out;
}

// A lease on `buffers`, or none when there are no buffers.
std::optional<DequantBuffers::Lease> lease_of(const c10::intrusive_ptr<DequantBuffers>& buffers) {
  std::optional<DequantBuffers::Lease> lease;
  if (buffers) lease.emplace(*buffers);
  return lease;
}

class MatMul8bit : public torch::autograd::Function<MatMul8bit> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            const std::shared_ptr<const kernels::Int8Weight>& weight,
                            int64_t path, double threshold, bool backward_casts_grad,
                            const c10::intrusive_ptr<DequantBuffers>& buffers) {
    ctx->saved_data["casts_grad"] = backward_casts_grad;
    save_buffers(ctx, buffers);
    at::Tensor out;
    if (static_cast<Int8Path>(path) == Int8Path::kDequantizeMatmul) {
      std::optional<DequantBuffers::Lease> lease = lease_of(buffers);
      out = at::linear(x, dequantize_for(weight->cb, weight->scb, x.scalar_type(), lease ? &*lease : nullptr));
    } else {
      out = kernels::int8_linear_forward(x, *weight, at::Tensor(), threshold);
    }
    // Both functions keep A (ctx.A / ctx.tensors) although grad_x does not need it.
    ctx->save_for_backward({x, weight->cb, weight->scb});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    at::Tensor grad = grad_outputs.at(0);
    at::Tensor grad_x;
    if (ctx->needs_input_grad(0)) {
      const variable_list saved = ctx->get_saved_variables();
      const at::Tensor& x = saved.at(0);
      if (grad.dim() == 3) grad = grad.reshape({-1, grad.size(-1)}).contiguous();
      // bitsandbytes <= 0.44: torch.matmul(grad_output, CB), no cast.
      if (ctx->saved_data["casts_grad"].toBool()) grad = grad.to(x.scalar_type());
      std::optional<DequantBuffers::Lease> lease = lease_of(restore_buffers(ctx));
      const at::Tensor w = dequantize_for(saved.at(1), saved.at(2), x.scalar_type(), lease ? &*lease : nullptr);
      grad_x = at::matmul(grad, w).view(x.sizes());
    }
    return {grad_x, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

int64_t nbytes(const at::Tensor& t) {
  return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0;
}

}  // namespace

// ---- Dense -------------------------------------------------------------------------------------

DenseLinear::DenseLinear(at::Tensor weight) : weight_(std::move(weight)) {
  weight_.set_requires_grad(false);
}
at::Tensor DenseLinear::forward(const at::Tensor& x) const { return at::linear(x, weight_); }
int64_t DenseLinear::storage_bytes() const { return nbytes(weight_); }
int64_t DenseLinear::numel() const { return weight_.numel(); }

// ---- Linear4bit --------------------------------------------------------------------------------

Linear4bit::Linear4bit(const at::Tensor& weight, kernels::QuantType4 type, bool double_quant,
                       at::ScalarType compute_dtype, int64_t blocksize,
                       bool input_sets_compute_dtype, c10::intrusive_ptr<DequantBuffers> buffers)
    : state_(std::make_shared<const kernels::QuantState4>(
          kernels::quantize_4bit(weight, type, blocksize, double_quant))),
      buffers_(buffers ? std::move(buffers) : c10::make_intrusive<DequantBuffers>()),
      compute_dtype_(compute_dtype),
      compute_type_is_set_(!input_sets_compute_dtype) {}

at::Tensor Linear4bit::forward(const at::Tensor& x) const {
  const at::ScalarType input_dtype = x.scalar_type();
  if (!compute_type_is_set_) {
    // set_compute_type: fp32 and bf16 inputs are "safe to compute in" and win; fp16 keeps it.
    if (input_dtype == at::kFloat || input_dtype == at::kBFloat16) compute_dtype_ = input_dtype;
    compute_type_is_set_ = true;
  }
  return matmul_4bit(x.to(compute_dtype_), state_, buffers_).to(input_dtype);
}

int64_t Linear4bit::storage_bytes() const {
  int64_t bytes = nbytes(state_->packed) + nbytes(state_->absmax) + nbytes(state_->code);
  if (state_->nested) bytes += nbytes(state_->nested->absmax2) + nbytes(state_->nested->code);
  return bytes;
}
int64_t Linear4bit::numel() const { return state_->numel(); }

at::Tensor matmul_4bit(const at::Tensor& x, const std::shared_ptr<const kernels::QuantState4>& state,
                       const c10::intrusive_ptr<DequantBuffers>& buffers) {
  return MatMul4Bit::apply(x, state, buffers);
}

std::vector<at::Tensor> matmul_4bit_saved_tensors(const at::Tensor& output) {
  // A raw pointer: grad_fn() is a shared_ptr in LibTorch 1.13 and an intrusive_ptr in 2.13.
  const auto* node = dynamic_cast<const torch::autograd::CppNode<MatMul4Bit>*>(output.grad_fn().get());
  if (!node) throw std::invalid_argument("tensor was not produced by matmul_4bit with autograd");
  return node->ctx_.get_saved_variables();
}

// ---- Linear8bitLt ------------------------------------------------------------------------------

Int8Path int8_path_for_device(const at::Device& device) {
  return device.is_cpu() ? Int8Path::kDequantizeMatmul : Int8Path::kLlmInt8;
}

Linear8bitLt::Linear8bitLt(const at::Tensor& weight, Int8Path path, double threshold,
                           bool backward_casts_grad, c10::intrusive_ptr<DequantBuffers> buffers)
    : weight_(std::make_shared<const kernels::Int8Weight>(kernels::quantize_int8_rowwise(weight))),
      path_(path),
      threshold_(threshold),
      backward_casts_grad_(backward_casts_grad),
      buffers_(buffers ? std::move(buffers) : c10::make_intrusive<DequantBuffers>()) {}

at::Tensor Linear8bitLt::forward(const at::Tensor& x) const {
  return matmul_8bit(x, weight_, path_, threshold_, backward_casts_grad_, buffers_);
}
int64_t Linear8bitLt::storage_bytes() const { return nbytes(weight_->cb) + nbytes(weight_->scb); }
int64_t Linear8bitLt::numel() const { return weight_->cb.numel(); }

at::Tensor matmul_8bit(const at::Tensor& x, const std::shared_ptr<const kernels::Int8Weight>& weight,
                       Int8Path path, double threshold, bool backward_casts_grad,
                       const c10::intrusive_ptr<DequantBuffers>& buffers) {
  return MatMul8bit::apply(x, weight, static_cast<int64_t>(path), threshold, backward_casts_grad, buffers);
}

}  // namespace qlc::harness
