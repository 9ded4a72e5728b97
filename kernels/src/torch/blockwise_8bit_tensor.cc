// quantize_8bit_blockwise / dequantize_8bit_blockwise over at::Tensor (bitsandbytes'
// quantize_blockwise / dequantize_blockwise with the dynamic map).
#include <ATen/ops/empty.h>

#include "cpu_backend.h"
#include "cuda_backend.h"
#include "fresh_output.h"
#include "qlc/kernels/tensor_api.h"
#include "tensor_checks.h"

namespace qlc::kernels {
namespace {

using detail::Backend;
using detail::CpuKernels;
using detail::typed;
using detail::typed_mut;

constexpr const char* kQuantize = "quantize_8bit_blockwise";
constexpr const char* kDequantize = "dequantize_8bit_blockwise";

constexpr const char* kQuantizeOut = "quantize_8bit_blockwise_out";
constexpr const char* kDequantizeOut = "dequantize_8bit_blockwise_out";

// quantize_8bit_blockwise into `state`'s q and absmax (checked), with its blocksize and is_signed.
void quantize_impl(const char* fn, const at::Tensor& x, QuantState8& state, Search8 search) {
  const Backend backend = detail::backend_of(fn, "x", x);
  detail::check_float_dtype(fn, "x", x);
  detail::check_blocksize(fn, state.blocksize);
  detail::check_output(fn, "state.q", state.q, at::kByte, x.sizes(), x.device(), "x");
  const int64_t n = x.numel();
  detail::check_output(fn, "state.absmax", state.absmax, at::kFloat, {num_blocks(n, state.blocksize)},
                       x.device(), "x");
  detail::check_finite(fn, "x", x, "bitsandbytes would silently produce garbage");
  const at::Tensor c = x.contiguous();
  state.dtype = c.scalar_type();
  if (n == 0) return;
  if (backend == Backend::kCpu) {
    detail::with_float_type(c.scalar_type(), [&](auto tag) {
      using T = decltype(tag);
      CpuKernels::quantize_8bit(typed<T>(c), n, state.blocksize, state.is_signed, search,
                                typed_mut<uint8_t>(state.q), typed_mut<float>(state.absmax));
    });
  } else {
    detail::cuda_backend::quantize_8bit(fn, c, state.blocksize, state.is_signed, search, state.q, state.absmax);
  }
}

void check_state(const char* fn, const QuantState8& state) {
  detail::backend_of(fn, "state.q", state.q);
  detail::check_dtype(fn, "state.q", state.q, at::kByte);
  detail::check_dtype(fn, "state.absmax", state.absmax, at::kFloat);
  detail::check_same_device(fn, "state.absmax", state.absmax, "state.q", state.q);
  detail::check_blocksize(fn, state.blocksize);
  const int64_t n = state.q.numel();
  if (state.absmax.numel() != num_blocks(n, state.blocksize))
    detail::fail(fn, "state.absmax has " + std::to_string(state.absmax.numel()) + " elements; " +
                         std::to_string(n) + " values in blocks of " + std::to_string(state.blocksize) +
                         " need " + std::to_string(num_blocks(n, state.blocksize)));
}

// dequantize of a checked state into a checked `out` (its dtype is the one written).
void dequantize_impl(const char* fn, const QuantState8& state, const at::Tensor& out) {
  const Backend backend = detail::backend_of(fn, "state.q", state.q);
  const int64_t n = state.q.numel();
  if (n == 0) return;
  const at::Tensor q = state.q.contiguous();
  const at::Tensor absmax = state.absmax.contiguous();
  if (backend == Backend::kCpu) {
    detail::with_float_type(out.scalar_type(), [&](auto tag) {
      using T = decltype(tag);
      CpuKernels::dequantize_8bit(typed<uint8_t>(q), typed<float>(absmax), n, state.blocksize,
                                  state.is_signed, typed_mut<T>(out));
    });
  } else {
    detail::cuda_backend::dequantize_8bit(fn, q, absmax, state.blocksize, state.is_signed, out);
  }
}

}  // namespace

QuantState8 quantize_8bit_blockwise(const at::Tensor& x, int64_t blocksize, bool is_signed,
                                    Search8 search) {
  detail::backend_of(kQuantize, "x", x);
  detail::check_float_dtype(kQuantize, "x", x);
  detail::check_blocksize(kQuantize, blocksize);
  QuantState8 state;
  state.q = at::empty(x.sizes(), x.options().dtype(at::kByte));
  state.absmax = at::empty({num_blocks(x.numel(), blocksize)}, x.options().dtype(at::kFloat));
  state.blocksize = blocksize;
  state.is_signed = is_signed;
  quantize_impl(kQuantize, x, state, search);
  return state;
}

void quantize_8bit_blockwise_out(const at::Tensor& x, QuantState8& state, Search8 search) {
  quantize_impl(kQuantizeOut, x, state, search);
}

at::Tensor dequantize_8bit_blockwise(const QuantState8& state) {
  return dequantize_8bit_blockwise(state, state.dtype);
}

at::Tensor dequantize_8bit_blockwise(const QuantState8& state, at::ScalarType dtype) {
  check_state(kDequantize, state);
  detail::check_out_dtype(kDequantize, dtype);
  at::Tensor out = detail::fresh_output(state.q.sizes(), state.q.options().dtype(dtype));
  dequantize_impl(kDequantize, state, out);
  return out;
}

void dequantize_8bit_blockwise_out(const QuantState8& state, const at::Tensor& out) {
  check_state(kDequantizeOut, state);
  detail::check_output(kDequantizeOut, "out", out, at::ScalarType::Undefined, state.q.sizes(),
                       state.q.device(), "state.q");
  dequantize_impl(kDequantizeOut, state, out);
}

}  // namespace qlc::kernels
