// quantize_4bit / dequantize_4bit over at::Tensor (bitsandbytes.functional's, on CPU and CUDA).
#include <ATen/ops/empty.h>

#include <cstring>
#include <limits>

#include "cpu_backend.h"
#include "cuda_backend.h"
#include "qlc/kernels/double_quant.h"
#include "qlc/kernels/dynamic_map.h"
#include "qlc/kernels/tensor_api.h"
#include "tensor_checks.h"

namespace qlc::kernels {
namespace {

using detail::Backend;
using detail::CpuKernels;
using detail::typed;
using detail::typed_mut;

constexpr const char* kQuantize = "quantize_4bit";
constexpr const char* kDequantize = "dequantize_4bit";

// A fp32 copy of a code table on `device` (bitsandbytes keeps one in every QuantState).
at::Tensor table_tensor(const float* values, int64_t n, at::Device device) {
  at::Tensor t = at::empty({n}, at::TensorOptions().dtype(at::kFloat));
  std::memcpy(t.data_ptr(), values, static_cast<size_t>(n) * sizeof(float));
  return device.is_cpu() ? t : t.to(device, at::kFloat);
}

// absmax[i] = code[q[i]] * absmax2[i / blocksize] + offset, two fp32 roundings, with the state's
// own nested code: bitsandbytes restores with the table stored beside the weight, and that table's
// last bits depend on the LibTorch that built it (create_dynamic_map runs torch.linspace).
at::Tensor restore_absmax(const NestedAbsmax& nested, const at::Tensor& q, int64_t blocks) {
  const at::Tensor code = nested.code.contiguous();
  const at::Tensor absmax2 = nested.absmax2.contiguous();
  if (q.device().is_cpu()) {
    at::Tensor out = at::empty({blocks}, q.options().dtype(at::kFloat));
    const uint8_t* qv = typed<uint8_t>(q);
    const float* table = typed<float>(code);
    const float* scale = typed<float>(absmax2);
    float* o = typed_mut<float>(out);
    for (int64_t i = 0; i < blocks; ++i) {
      const float v = table[qv[i]] * scale[i / nested.blocksize];
      o[i] = v + nested.offset;
    }
    return out;
  }
  // Device-generic ATen: the same two roundings, one elementwise op each.
  return code.index_select(0, q.to(at::kLong))
      .mul(absmax2.repeat_interleave(nested.blocksize).narrow(0, 0, blocks))
      .add(static_cast<double>(nested.offset));
}

}  // namespace

int64_t QuantState4::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

QuantState4 quantize_4bit(const at::Tensor& weight, QuantType4 type, int64_t blocksize,
                          bool double_quant) {
  const Backend backend = detail::backend_of(kQuantize, "weight", weight);
  detail::check_float_dtype(kQuantize, "weight", weight);
  detail::check_blocksize(kQuantize, blocksize);
  detail::check_finite(kQuantize, "weight", weight, "bitsandbytes would silently produce garbage");

  const at::Tensor x = weight.contiguous();
  const int64_t n = x.numel();
  const int64_t blocks = num_blocks(n, blocksize);
  const at::TensorOptions u8 = x.options().dtype(at::kByte);
  const at::TensorOptions f32 = x.options().dtype(at::kFloat);

  QuantState4 state;
  state.packed = at::empty({packed_bytes_4bit(n), 1}, u8);  // Params4bit's layout
  state.code = table_tensor(codebook4(type).code, 16, x.device());
  state.shape = weight.sizes().vec();
  state.dtype = weight.scalar_type();
  state.blocksize = blocksize;
  state.quant_type = type;
  at::Tensor absmax = at::empty({blocks}, f32);
  if (n > 0) {
    if (backend == Backend::kCpu) {
      detail::with_float_type(x.scalar_type(), [&](auto tag) {
        using T = decltype(tag);
        CpuKernels::quantize_4bit(typed<T>(x), n, blocksize, type, typed_mut<uint8_t>(state.packed),
                                  typed_mut<float>(absmax));
      });
    } else {
      detail::cuda_backend::quantize_4bit(kQuantize, x, blocksize, type, state.packed, absmax);
    }
  }
  if (!double_quant) {
    state.absmax = absmax;
    return state;
  }

  // compress_statistics: offset = mean(absmax), then absmax - offset in 8 bits, blocks of 256.
  NestedAbsmax nested;
  nested.blocksize = kDoubleQuantBlocksize;
  nested.code = table_tensor(dynamic_map(true).code, 256, x.device());
  nested.absmax2 = at::empty({num_blocks(blocks, kDoubleQuantBlocksize)}, f32);
  state.absmax = at::empty({blocks}, u8);
  if (blocks == 0) {
    nested.offset = std::numeric_limits<float>::quiet_NaN();  // torch's mean of nothing, as bnb stores
  } else if (backend == Backend::kCpu) {
    nested.offset = torch_cpu_mean(typed<float>(absmax), blocks, kTorchMeanLanes);
    double_quantize_reference(typed<float>(absmax), blocks, nested.offset,
                              typed_mut<uint8_t>(state.absmax), typed_mut<float>(nested.absmax2));
  } else {
    nested.offset = detail::cuda_backend::double_quantize(kQuantize, absmax, state.absmax, nested.absmax2);
  }
  state.nested = std::move(nested);
  return state;
}

at::Tensor dequantize_4bit(const QuantState4& state) { return dequantize_4bit(state, state.dtype); }

at::Tensor dequantize_4bit(const QuantState4& state, at::ScalarType dtype) {
  const std::string problem = quant_state_problem(state);
  if (!problem.empty()) detail::fail(kDequantize, "state " + problem);
  detail::check_out_dtype(kDequantize, dtype);
  const Backend backend = detail::backend_of(kDequantize, "state.packed", state.packed);

  const int64_t n = state.numel();
  const int64_t blocks = num_blocks(n, state.blocksize);
  const at::Tensor packed = state.packed.contiguous();
  at::Tensor absmax = state.absmax.contiguous();
  if (state.nested && blocks > 0) absmax = restore_absmax(*state.nested, absmax, blocks);
  at::Tensor out = at::empty(state.shape, packed.options().dtype(dtype));
  if (n == 0) return out;
  if (backend == Backend::kCpu) {
    detail::with_float_type(dtype, [&](auto tag) {
      using T = decltype(tag);
      CpuKernels::dequantize_4bit(typed<uint8_t>(packed), typed<float>(absmax), n, state.blocksize,
                                  state.quant_type, typed_mut<T>(out));
    });
  } else {
    detail::cuda_backend::dequantize_4bit(kDequantize, packed, absmax, n, state.blocksize,
                                          state.quant_type, out);
  }
  return out;
}

}  // namespace qlc::kernels
