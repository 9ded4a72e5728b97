// quantize_4bit / dequantize_4bit over at::Tensor (bitsandbytes.functional's, on CPU and CUDA).
#include <ATen/ops/empty.h>

#include <cstring>
#include <limits>

#include "cpu_backend.h"
#include "cuda_backend.h"
#include "fresh_output.h"
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
constexpr const char* kQuantizeOut = "quantize_4bit_out";
constexpr const char* kDequantizeOut = "dequantize_4bit_out";

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

// quantize_4bit into `state`'s buffers (checked): its blocksize, quant type and double
// quantization (nested set) say how; shape, dtype and code books are set from `weight`.
void quantize_4bit_impl(const char* fn, const at::Tensor& weight, QuantState4& state) {
  const Backend backend = detail::backend_of(fn, "weight", weight);
  detail::check_float_dtype(fn, "weight", weight);
  detail::check_blocksize(fn, state.blocksize);
  const int64_t n = weight.numel();
  const int64_t blocks = num_blocks(n, state.blocksize);
  const bool double_quant = state.nested.has_value();
  const at::Device device = weight.device();
  detail::check_output(fn, "state.packed", state.packed, at::kByte, {packed_bytes_4bit(n), 1}, device, "weight");
  detail::check_output(fn, "state.absmax", state.absmax, double_quant ? at::kByte : at::kFloat, {blocks},
                       device, "weight");
  if (double_quant)
    detail::check_output(fn, "state.nested.absmax2", state.nested->absmax2, at::kFloat,
                         {num_blocks(blocks, kDoubleQuantBlocksize)}, device, "weight");
  constexpr const char* kNonFinite = "bitsandbytes would silently produce garbage";
  // On the CPU the kernel itself refuses NaN/Inf (no extra pass over the weight); elsewhere a
  // check runs first.
  if (backend != Backend::kCpu) detail::check_finite(fn, "weight", weight, kNonFinite);

  const at::Tensor x = weight.contiguous();
  const QuantType4 type = state.quant_type;
  // Without double quantization the absmax values go straight to the state.
  at::Tensor absmax = double_quant ? at::empty({blocks}, x.options().dtype(at::kFloat)) : state.absmax;
  if (n > 0) {
    if (backend == Backend::kCpu) {
      const bool finite = detail::with_float_type(x.scalar_type(), [&](auto tag) {
        using T = decltype(tag);
        return CpuKernels::quantize_4bit_finite(typed<T>(x), n, state.blocksize, type,
                                                typed_mut<uint8_t>(state.packed), typed_mut<float>(absmax));
      });
      if (!finite) {
        // Part of the buffers may hold new codes beside old ones: no later call may read them.
        const bool into_caller_state = fn == kQuantizeOut;
        if (into_caller_state) state.packed = at::Tensor();
        const std::string consequence =
            std::string(kNonFinite) +
            (into_caller_state ? "; state.packed was partly rewritten and is now reset (undefined)" : "");
        detail::check_finite(fn, "weight", x, consequence.c_str());
        detail::fail(fn, "weight contains NaN/Inf; " + consequence);  // the scan above throws first
      }
    } else {
      detail::cuda_backend::quantize_4bit(fn, x, state.blocksize, type, state.packed, absmax);
    }
  }
  state.code = table_tensor(codebook4(type).code, 16, device);
  state.shape = weight.sizes().vec();
  state.dtype = weight.scalar_type();
  if (!double_quant) return;

  // compress_statistics: offset = mean(absmax), then absmax - offset in 8 bits, blocks of 256.
  NestedAbsmax& nested = *state.nested;
  nested.blocksize = kDoubleQuantBlocksize;
  nested.code = table_tensor(dynamic_map(true).code, 256, device);
  if (blocks == 0) {
    nested.offset = std::numeric_limits<float>::quiet_NaN();  // torch's mean of nothing, as bnb stores
  } else if (backend == Backend::kCpu) {
    nested.offset = torch_cpu_mean(typed<float>(absmax), blocks, kTorchMeanLanes);
    double_quantize_reference(typed<float>(absmax), blocks, nested.offset,
                              typed_mut<uint8_t>(state.absmax), typed_mut<float>(nested.absmax2));
  } else {
    nested.offset = detail::cuda_backend::double_quantize(fn, absmax, state.absmax, nested.absmax2);
  }
}

// dequantize_4bit of a checked state into a checked `out` (its dtype is the one written).
void dequantize_4bit_impl(const char* fn, const QuantState4& state, const at::Tensor& out) {
  const Backend backend = detail::backend_of(fn, "state.packed", state.packed);
  const int64_t n = state.numel();
  if (n == 0) return;
  const int64_t blocks = num_blocks(n, state.blocksize);
  const at::Tensor packed = state.packed.contiguous();
  at::Tensor absmax = state.absmax.contiguous();
  if (state.nested) absmax = restore_absmax(*state.nested, absmax, blocks);
  if (backend == Backend::kCpu) {
    detail::with_float_type(out.scalar_type(), [&](auto tag) {
      using T = decltype(tag);
      CpuKernels::dequantize_4bit(typed<uint8_t>(packed), typed<float>(absmax), n, state.blocksize,
                                  state.quant_type, typed_mut<T>(out));
    });
  } else {
    detail::cuda_backend::dequantize_4bit(fn, packed, absmax, n, state.blocksize, state.quant_type, out);
  }
}

}  // namespace

int64_t QuantState4::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

QuantState4 quantize_4bit(const at::Tensor& weight, QuantType4 type, int64_t blocksize,
                          bool double_quant) {
  // The buffers a state of this weight needs, then the out= form fills them.
  detail::backend_of(kQuantize, "weight", weight);
  detail::check_float_dtype(kQuantize, "weight", weight);
  detail::check_blocksize(kQuantize, blocksize);
  const int64_t n = weight.numel();
  const int64_t blocks = num_blocks(n, blocksize);
  const at::TensorOptions u8 = weight.options().dtype(at::kByte);
  QuantState4 state;
  state.packed = detail::fresh_output({packed_bytes_4bit(n), 1}, u8);  // Params4bit's layout
  state.blocksize = blocksize;
  state.quant_type = type;
  if (double_quant) {
    NestedAbsmax nested;
    nested.absmax2 = at::empty({num_blocks(blocks, kDoubleQuantBlocksize)}, weight.options().dtype(at::kFloat));
    state.nested = std::move(nested);
    state.absmax = at::empty({blocks}, u8);
  } else {
    state.absmax = at::empty({blocks}, weight.options().dtype(at::kFloat));
  }
  quantize_4bit_impl(kQuantize, weight, state);
  return state;
}

void quantize_4bit_out(const at::Tensor& weight, QuantState4& state) {
  quantize_4bit_impl(kQuantizeOut, weight, state);
}

at::Tensor dequantize_4bit(const QuantState4& state) { return dequantize_4bit(state, state.dtype); }

at::Tensor dequantize_4bit(const QuantState4& state, at::ScalarType dtype) {
  const std::string problem = quant_state_problem(state);
  if (!problem.empty()) detail::fail(kDequantize, "state " + problem);
  detail::check_out_dtype(kDequantize, dtype);
  detail::backend_of(kDequantize, "state.packed", state.packed);
  at::Tensor out = detail::fresh_output(state.shape, state.packed.options().dtype(dtype));
  dequantize_4bit_impl(kDequantize, state, out);
  return out;
}

void dequantize_4bit_out(const QuantState4& state, const at::Tensor& out) {
  const std::string problem = quant_state_problem(state);
  if (!problem.empty()) detail::fail(kDequantizeOut, "state " + problem);
  detail::backend_of(kDequantizeOut, "state.packed", state.packed);
  detail::check_output(kDequantizeOut, "out", out, at::ScalarType::Undefined, state.shape,
                       state.packed.device(), "state.packed");
  dequantize_4bit_impl(kDequantizeOut, state, out);
}

}  // namespace qlc::kernels
