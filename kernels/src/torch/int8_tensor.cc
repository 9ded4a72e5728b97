// LLM.int8 over at::Tensor: weight quantization (Int8Params), activation quantization with
// outlier columns (int8_vectorwise_quant) and the frozen-weight forward (MatMul8bitLt).
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cuda_backend.h"
#include "fresh_output.h"
#include "qlc/kernels/tensor_api.h"
#include "tensor_checks.h"

namespace qlc::kernels {
namespace {

using detail::Backend;
using detail::typed;
using detail::typed_mut;

// An fp32 GEMM of int8 codes is exact when every partial sum stays below 2^24 whatever the
// summation order: |a * b| <= 127 * 127 = 16129 and 16129 * 1040 = 16,774,160 < 2^24.
constexpr int64_t kExactFp32Chunk = 1040;

void check_weight(const char* function, const Int8Weight& w) {
  detail::check_dtype(function, "weight.cb", w.cb, at::kChar);
  detail::check_dtype(function, "weight.scb", w.scb, at::kFloat);
  if (w.cb.dim() != 2)
    detail::fail(function, "weight.cb has shape " + detail::shape_string(w.cb.sizes()) +
                               "; expected [out_features, in_features]");
  if (w.scb.dim() != 1 || w.scb.size(0) != w.cb.size(0))
    detail::fail(function, "weight.scb has shape " + detail::shape_string(w.scb.sizes()) + "; expected [" +
                               std::to_string(w.cb.size(0)) + "] (one scale per row of weight.cb)");
  detail::check_same_device(function, "weight.scb", w.scb, "weight.cb", w.cb);
}

void check_threshold(const char* function, double threshold) {
  if (!(std::isfinite(threshold) && threshold >= 0.0))
    detail::fail(function, "threshold " + std::to_string(threshold) +
                               " is invalid; expected a finite value >= 0 (0 disables outlier columns)");
}

// x viewed as [rows, x.size(-1)] (also when the last dimension is 0).
at::Tensor as_matrix(const at::Tensor& x) {
  const int64_t cols = x.size(-1);
  int64_t rows = 1;
  for (int64_t i = 0; i + 1 < x.dim(); ++i) rows *= x.size(i);
  return x.reshape({rows, cols});
}

// int8_vectorwise_quant on fp16(x) for a checked [rows, cols] x.
Int8Activation quantize_activation(const char* function, const at::Tensor& x2d, float threshold) {
  const Backend backend = detail::backend_of(function, "x", x2d);
  const at::Tensor x16 = x2d.contiguous().to(at::kHalf);  // MatMul8bitLt: A.to(torch.float16)
  const int64_t rows = x16.size(0), cols = x16.size(1);
  Int8Activation a;
  a.ca = at::empty({rows, cols}, x16.options().dtype(at::kChar));
  a.sca = at::zeros({rows}, x16.options().dtype(at::kFloat));
  at::Tensor outlier_cols = at::empty({cols}, x16.options().dtype(at::kLong));
  int64_t count = 0;
  if (rows > 0 && cols > 0) {
    if (backend == Backend::kCpu) {
      count = quantize_int8_rowwise_reference(typed<Fp16>(x16), rows, cols, threshold,
                                              typed_mut<int8_t>(a.ca), typed_mut<float>(a.sca),
                                              typed_mut<int64_t>(outlier_cols));
    } else {
      count = detail::cuda_backend::quantize_int8_rowwise(function, x16, threshold, a.ca, a.sca, outlier_cols);
    }
  }
  a.outlier_cols = outlier_cols.narrow(0, 0, count);
  return a;
}

// Dequantization of a checked weight into a checked `out` (its dtype is the one written).
void dequantize_rowwise_impl(const char* fn, const Int8Weight& weight, Int8DequantOrder order,
                             const at::Tensor& out) {
  const Backend backend = detail::backend_of(fn, "weight.cb", weight.cb);
  const at::Tensor q = weight.cb.contiguous();
  const at::Tensor stats = weight.scb.contiguous();
  if (q.numel() == 0) return;
  if (backend == Backend::kCpu) {
    detail::with_float_type(out.scalar_type(), [&](auto tag) {
      using T = decltype(tag);
      dequantize_int8_rowwise_reference(typed<int8_t>(q), typed<float>(stats), q.size(0), q.size(1),
                                        order, typed_mut<T>(out));
    });
  } else {
    detail::cuda_backend::dequantize_int8_rowwise(fn, q, stats, order, out);
  }
}

}  // namespace

Int8Weight quantize_int8_rowwise(const at::Tensor& weight) {
  constexpr const char* kFn = "quantize_int8_rowwise";
  const Backend backend = detail::backend_of(kFn, "weight", weight);
  detail::check_float_dtype(kFn, "weight", weight);
  if (weight.dim() != 2)
    detail::fail(kFn, "weight has shape " + detail::shape_string(weight.sizes()) +
                          "; expected a 2-D [out_features, in_features] matrix");
  detail::check_finite(kFn, "weight", weight, "bitsandbytes would silently produce garbage");
  // Int8Params quantizes weight.to(float16): values past fp16's range would become inf.
  const at::Tensor w16 = weight.contiguous().to(at::kHalf);
  if (weight.scalar_type() != at::kHalf)
    detail::check_finite(kFn, "weight cast to fp16", w16,
                         "bitsandbytes quantizes fp16(weight), so |w| must stay below 65520");
  const int64_t rows = w16.size(0), cols = w16.size(1);
  Int8Weight w;
  w.cb = at::empty({rows, cols}, w16.options().dtype(at::kChar));
  w.scb = at::zeros({rows}, w16.options().dtype(at::kFloat));  // an empty row's absmax is 0
  if (rows == 0 || cols == 0) return w;
  if (backend == Backend::kCpu) {
    quantize_int8_rowwise_reference(typed<Fp16>(w16), rows, cols, 0.0f, typed_mut<int8_t>(w.cb),
                                    typed_mut<float>(w.scb), static_cast<int64_t*>(nullptr));
  } else {
    detail::cuda_backend::quantize_int8_rowwise(kFn, w16, 0.0f, w.cb, w.scb, at::Tensor());
  }
  return w;
}

at::Tensor dequantize_int8_rowwise(const Int8Weight& weight, at::ScalarType dtype, Int8DequantOrder order) {
  constexpr const char* kFn = "dequantize_int8_rowwise";
  detail::backend_of(kFn, "weight.cb", weight.cb);
  check_weight(kFn, weight);
  detail::check_out_dtype(kFn, dtype);
  at::Tensor out = detail::fresh_output(weight.cb.sizes(), weight.cb.options().dtype(dtype));
  dequantize_rowwise_impl(kFn, weight, order, out);
  return out;
}

void dequantize_int8_rowwise_out(const Int8Weight& weight, const at::Tensor& out, Int8DequantOrder order) {
  constexpr const char* kFn = "dequantize_int8_rowwise_out";
  detail::backend_of(kFn, "weight.cb", weight.cb);
  check_weight(kFn, weight);
  detail::check_output(kFn, "out", out, at::ScalarType::Undefined, weight.cb.sizes(), weight.cb.device(),
                       "weight.cb");
  dequantize_rowwise_impl(kFn, weight, order, out);
}

Int8Activation quantize_int8_activation(const at::Tensor& x, double threshold) {
  constexpr const char* kFn = "quantize_int8_activation";
  detail::backend_of(kFn, "x", x);
  detail::check_float_dtype(kFn, "x", x);
  if (x.dim() < 1) detail::fail(kFn, "x is a scalar; expected at least one dimension");
  check_threshold(kFn, threshold);
  return quantize_activation(kFn, as_matrix(x), static_cast<float>(threshold));
}

at::Tensor int8_linear_forward(const at::Tensor& x, const Int8Weight& weight, const at::Tensor& bias,
                               double threshold) {
  constexpr const char* kFn = "int8_linear_forward";
  detail::backend_of(kFn, "x", x);
  detail::check_float_dtype(kFn, "x", x);
  check_weight(kFn, weight);
  detail::check_same_device(kFn, "weight.cb", weight.cb, "x", x);
  const int64_t in_features = weight.cb.size(1), out_features = weight.cb.size(0);
  if (x.dim() < 1 || x.size(-1) != in_features)
    detail::fail(kFn, "x has shape " + detail::shape_string(x.sizes()) + "; expected [..., " +
                          std::to_string(in_features) + "] (weight.cb is " +
                          detail::shape_string(weight.cb.sizes()) + ")");
  if (bias.defined()) {
    detail::check_float_dtype(kFn, "bias", bias);
    detail::check_same_device(kFn, "bias", bias, "x", x);
    if (bias.dim() != 1 || bias.size(0) != out_features)
      detail::fail(kFn, "bias has shape " + detail::shape_string(bias.sizes()) + "; expected [" +
                            std::to_string(out_features) + "]");
  }
  check_threshold(kFn, threshold);

  const at::ScalarType dtype = x.scalar_type();
  const at::Tensor x2d = as_matrix(x);
  const int64_t rows = x2d.size(0);
  const Int8Activation a = quantize_activation(kFn, x2d, static_cast<float>(threshold));

  // The int8 GEMM, exact: fp32 matmuls over chunks of at most 1040 columns, summed in int32.
  at::Tensor acc = at::zeros({rows, out_features}, x2d.options().dtype(at::kInt));
  for (int64_t k0 = 0; k0 < in_features; k0 += kExactFp32Chunk) {
    const int64_t len = std::min(kExactFp32Chunk, in_features - k0);
    const at::Tensor a_part = a.ca.narrow(1, k0, len).to(at::kFloat);
    const at::Tensor b_part = weight.cb.narrow(1, k0, len).to(at::kFloat);
    acc.add_(a_part.matmul(b_part.t()).to(at::kInt));
  }
  // int8_mm_dequant: acc * (SCA * SCB) * 6.200124e-05 in fp32, + bias (cast to x's dtype), then x's dtype.
  at::Tensor y = acc.to(at::kFloat)
                     .mul(a.sca.unsqueeze(1).mul(weight.scb.unsqueeze(0)))
                     .mul(static_cast<double>(kBnbCpuMmDequantScale));
  if (bias.defined()) y.add_(bias.to(dtype));
  y = y.to(dtype);

  // int8_mixed_scaled_mm: outlier columns in x's own precision against dequantized weight columns.
  if (a.outlier_cols.numel() > 0) {
    const at::Tensor sub_a = x2d.index_select(1, a.outlier_cols);
    const at::Tensor sub_b = weight.cb.index_select(1, a.outlier_cols)
                                 .to(at::kFloat)
                                 .mul(weight.scb.unsqueeze(1))
                                 .mul(static_cast<double>(kInt8DequantScale))
                                 .to(dtype);
    y = y.addmm(sub_a, sub_b.t());
  }
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = out_features;
  return y.reshape(shape);
}

}  // namespace qlc::kernels
