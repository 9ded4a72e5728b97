// quantize_8bit_blockwise / dequantize_8bit_blockwise over at::Tensor (bitsandbytes'
// quantize_blockwise / dequantize_blockwise with the dynamic map).
#include <ATen/ops/empty.h>

#include "cpu_backend.h"
#include "cuda_backend.h"
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

}  // namespace

QuantState8 quantize_8bit_blockwise(const at::Tensor& x, int64_t blocksize, bool is_signed,
                                    Search8 search) {
  const Backend backend = detail::backend_of(kQuantize, "x", x);
  detail::check_float_dtype(kQuantize, "x", x);
  detail::check_blocksize(kQuantize, blocksize);
  detail::check_finite(kQuantize, "x", x, "bitsandbytes would silently produce garbage");
  const at::Tensor c = x.contiguous();
  const int64_t n = c.numel();
  QuantState8 state;
  state.q = at::empty(c.sizes(), c.options().dtype(at::kByte));
  state.absmax = at::empty({num_blocks(n, blocksize)}, c.options().dtype(at::kFloat));
  state.blocksize = blocksize;
  state.is_signed = is_signed;
  state.dtype = c.scalar_type();
  if (n == 0) return state;
  if (backend == Backend::kCpu) {
    detail::with_float_type(c.scalar_type(), [&](auto tag) {
      using T = decltype(tag);
      CpuKernels::quantize_8bit(typed<T>(c), n, blocksize, is_signed, search,
                                typed_mut<uint8_t>(state.q), typed_mut<float>(state.absmax));
    });
  } else {
    detail::cuda_backend::quantize_8bit(kQuantize, c, blocksize, is_signed, search, state.q, state.absmax);
  }
  return state;
}

at::Tensor dequantize_8bit_blockwise(const QuantState8& state) {
  return dequantize_8bit_blockwise(state, state.dtype);
}

at::Tensor dequantize_8bit_blockwise(const QuantState8& state, at::ScalarType dtype) {
  const Backend backend = detail::backend_of(kDequantize, "state.q", state.q);
  detail::check_dtype(kDequantize, "state.q", state.q, at::kByte);
  detail::check_dtype(kDequantize, "state.absmax", state.absmax, at::kFloat);
  detail::check_same_device(kDequantize, "state.absmax", state.absmax, "state.q", state.q);
  detail::check_blocksize(kDequantize, state.blocksize);
  detail::check_out_dtype(kDequantize, dtype);
  const int64_t n = state.q.numel();
  if (state.absmax.numel() != num_blocks(n, state.blocksize))
    detail::fail(kDequantize, "state.absmax has " + std::to_string(state.absmax.numel()) + " elements; " +
                                  std::to_string(n) + " values in blocks of " + std::to_string(state.blocksize) +
                                  " need " + std::to_string(num_blocks(n, state.blocksize)));
  const at::Tensor q = state.q.contiguous();
  const at::Tensor absmax = state.absmax.contiguous();
  at::Tensor out = at::empty(q.sizes(), q.options().dtype(dtype));
  if (n == 0) return out;
  if (backend == Backend::kCpu) {
    detail::with_float_type(dtype, [&](auto tag) {
      using T = decltype(tag);
      CpuKernels::dequantize_8bit(typed<uint8_t>(q), typed<float>(absmax), n, state.blocksize,
                                  state.is_signed, typed_mut<T>(out));
    });
  } else {
    detail::cuda_backend::dequantize_8bit(kDequantize, q, absmax, state.blocksize, state.is_signed, out);
  }
  return out;
}

}  // namespace qlc::kernels
