// The tensor-level API over at::Tensor: checks its inputs and dispatches on the tensor's device
// (CPU: the fastest CPU implementation; CUDA: the CUDA kernels when the build has them).
//
// Every input problem (dtype, device, shape, blocksize, NaN/Inf weights) is a KernelInputError whose
// message names the function, the argument and what was expected. Inputs may be fp32, fp16 or bf16,
// non-contiguous (same result as their contiguous copy) and empty. No CUDA headers here.
//
// The *_out forms write into buffers the caller owns and reuses: a fresh output costs more than
// the kernel (the first touch of each new page: about 36 ms per 128 MiB on a 2-core EPYC). An
// output must be contiguous, on the input's device, of the exact shape, and of a supported dtype
// (fp32, fp16 or bf16 for values: its dtype is the one written); anything else is a
// KernelInputError naming it. The allocating forms allocate and call them: same bits.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <stdexcept>

#include "qlc/kernels/blockwise_8bit.h"
#include "qlc/kernels/codebook_4bit.h"
#include "qlc/kernels/int8_rowwise.h"
#include "qlc/kernels/quant_state.h"

namespace qlc::kernels {

class KernelInputError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// ---- 4-bit NF4 / FP4 (bitsandbytes.functional.quantize_4bit / dequantize_4bit) ----------------
// `weight` of any shape; packed [(n+1)/2, 1]. double_quant = bitsandbytes' compress_statistics.
QuantState4 quantize_4bit(const at::Tensor& weight, QuantType4 type, int64_t blocksize = 64,
                          bool double_quant = false);
// The weight in its original shape, in `dtype` (fp32, fp16 or bf16) or else the state's dtype.
at::Tensor dequantize_4bit(const QuantState4& state);
at::Tensor dequantize_4bit(const QuantState4& state, at::ScalarType dtype);
// Into `out` (the state's shape, in out's dtype).
void dequantize_4bit_out(const QuantState4& state, const at::Tensor& out);
// Re-quantizes `weight` into `state`'s buffers, with its quant_type, blocksize and double
// quantization (nested set or not): packed uint8 [(n+1)/2, 1], absmax [blocks] (fp32, or uint8
// with nested.absmax2 fp32 [ceil(blocks / 256)]), n = weight.numel(). Sets shape, dtype, code
// books and the nested offset; same bits as quantize_4bit.
void quantize_4bit_out(const at::Tensor& weight, QuantState4& state);

// ---- 8-bit dynamic blockwise (bitsandbytes.functional.quantize_blockwise) ---------------------
struct QuantState8 {
  at::Tensor q;        // uint8, the input's shape
  at::Tensor absmax;   // fp32 [blocks]
  int64_t blocksize = 4096;
  bool is_signed = true;
  at::ScalarType dtype = at::kFloat;  // the input's dtype
};
// Search8::kBnbCpuLibrary is what bitsandbytes does for CPU tensors (its compiled library).
QuantState8 quantize_8bit_blockwise(const at::Tensor& x, int64_t blocksize = 4096,
                                    bool is_signed = true,
                                    Search8 search = Search8::kBnbCpuLibrary);
at::Tensor dequantize_8bit_blockwise(const QuantState8& state);
at::Tensor dequantize_8bit_blockwise(const QuantState8& state, at::ScalarType dtype);
// Into `out` (state.q's shape, in out's dtype).
void dequantize_8bit_blockwise_out(const QuantState8& state, const at::Tensor& out);
// Into `state`'s q (uint8, x's shape) and absmax (fp32 [blocks]), with its blocksize and is_signed;
// sets its dtype.
void quantize_8bit_blockwise_out(const at::Tensor& x, QuantState8& state,
                                 Search8 search = Search8::kBnbCpuLibrary);

// ---- LLM.int8 row-wise (bitsandbytes Linear8bitLt with has_fp16_weights=False) ---------------
struct Int8Weight {
  at::Tensor cb;   // int8 [out_features, in_features] ("CB", saved as "weight")
  at::Tensor scb;  // fp32 [out_features] ("SCB")
};
// A 2-D weight, cast to fp16 first as Int8Params does (|w| > 65504 is an error, not inf).
Int8Weight quantize_int8_rowwise(const at::Tensor& weight);
// [out, in] in `dtype`; kVectorwise is F.int8_vectorwise_dequant, kScaleFirst what the CPU training
// forward (MatMul8bitFp) and the backward multiply by.
at::Tensor dequantize_int8_rowwise(const Int8Weight& weight, at::ScalarType dtype = at::kFloat,
                                   Int8DequantOrder order = Int8DequantOrder::kVectorwise);
// Into `out` ([out, in], in out's dtype).
void dequantize_int8_rowwise_out(const Int8Weight& weight, const at::Tensor& out,
                                 Int8DequantOrder order = Int8DequantOrder::kVectorwise);

struct Int8Activation {
  at::Tensor ca;            // int8 [rows, in_features]
  at::Tensor sca;           // fp32 [rows]
  at::Tensor outlier_cols;  // int64 [count], ascending
};
// F.int8_vectorwise_quant(x.to(float16), threshold) over x viewed as [rows, x.size(-1)].
Int8Activation quantize_int8_activation(const at::Tensor& x,
                                        double threshold = kInt8OutlierThreshold);

// MatMul8bitLt's forward: x [..., in_features] -> [..., out_features] in x's dtype; `bias`
// (optional, [out_features]) is cast to x's dtype as Linear8bitLt does. NaN/Inf in x propagate to
// the affected output rows, as in bitsandbytes; threshold 0 disables the outlier columns.
at::Tensor int8_linear_forward(const at::Tensor& x, const Int8Weight& weight,
                               const at::Tensor& bias = at::Tensor(),
                               double threshold = kInt8OutlierThreshold);

}  // namespace qlc::kernels
