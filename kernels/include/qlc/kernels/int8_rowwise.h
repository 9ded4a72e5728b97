// LLM.int8 row-wise absmax quantization (bitsandbytes' Linear8bitLt / MatMul8bitLt), over raw
// buffers. A row r of a [rows, cols] matrix is stored as int8 codes q = round(x * 127 / absmax_r)
// (round half to even) with one fp32 scale absmax_r per row (bitsandbytes' CB and SCB). In the
// forward of a frozen int8 linear, activations are quantized the same way after holding back the
// outlier columns: every column with some |x| >= threshold (6.0 in transformers) is multiplied in
// the input's own precision against the dequantized weight columns.
//
// The per-element functions are QLC_HD so that the reference, the fast CPU path and the CUDA
// kernels share one definition. The *_reference functions are the scalar oracles; they assume
// valid arguments (the tensor-level API in tensor_api.h checks them).
#pragma once

#include <math.h>

#include <cstdint>

#include "qlc/kernels/float_bits.h"
#include "qlc/kernels/host_device.h"

namespace qlc::kernels {

// transformers' BitsAndBytesConfig(llm_int8_threshold=6.0): the LLM.int8 paper's outlier bound.
constexpr float kInt8OutlierThreshold = 6.0f;
// int8_vectorwise_dequant multiplies by 7.874015718698502e-3, which is fl32(1/127).
constexpr float kInt8DequantScale = 7.874015718698502e-3f;
// bitsandbytes' PyTorch int8_mm_dequant rescales by 6.200124e-05, not by fl32(1/127^2) =
// 6.200012e-05 (a relative difference of 1.8e-5; its CUDA kernel uses the latter). We reproduce
// the CPU path.
constexpr float kBnbCpuMmDequantScale = 6.200124e-05f;

// How a dequantized weight is rounded. bitsandbytes has two orders that differ in the last bit:
enum class Int8DequantOrder : uint8_t {
  kVectorwise,  // int8_vectorwise_dequant (outlier columns, F.int8_vectorwise_dequant): (q * SCB) / 127
  kScaleFirst,  // MatMul8bitFp (CPU training forward) and backward of both: q * (SCB / 127)
};

// The row scale. bitsandbytes writes `127.0 / row_stats`, which PyTorch evaluates as
// `row_stats.reciprocal() * 127`: two fp32 roundings, not one division. The difference decides
// ties: absmax 0.1590576171875 gives 798.45276 here (798.45282 by division), so fp16 -0.0795288
// scales to -63.499996 -> -63 where a division would give exactly -63.5 -> -64.
QLC_HD float int8_row_scale(float absmax) { return (1.0f / absmax) * 127.0f; }

// round(v * scale) to int8, half to even (torch.round). A non-finite product (an all-zero row
// gives 0 * inf = NaN) becomes 0, which is what torch's float -> int8 cast yields on x86; a finite
// product is within [-127, 127] up to rounding since |v| <= absmax.
QLC_HD int8_t quantize_int8_value(float v, float scale) {
  const float s = v * scale;
  const float a = s < 0.0f ? -s : s;
  if (!(a <= 127.5f)) return 0;
  return static_cast<int8_t>(::rintf(s));
}

// The outlier test of int8_vectorwise_quant: |v| >= threshold, only when threshold > 0.
QLC_HD bool is_int8_outlier(float v, float threshold) {
  const float a = v < 0.0f ? -v : v;
  return threshold > 0.0f && a >= threshold;
}

// max(running, |v|) propagating NaN, as torch.max does for the row statistics.
QLC_HD float absmax_nan_propagating(float running, float v) {
  const float a = v < 0.0f ? -v : v;
  return (a > running || a != a) ? a : running;
}

QLC_HD float dequantize_int8_value(int8_t q, float row_stat, Int8DequantOrder order) {
  return order == Int8DequantOrder::kVectorwise ? (static_cast<float>(q) * row_stat) * kInt8DequantScale
                                                : static_cast<float>(q) * (row_stat * kInt8DequantScale);
}

// int8_mm_dequant: acc * (row_stat * col_stat) * 6.200124e-05, each product rounded in fp32.
QLC_HD float int8_mm_dequant_value(int32_t acc, float row_stat, float col_stat) {
  return static_cast<float>(acc) * (row_stat * col_stat) * kBnbCpuMmDequantScale;
}

// Quantizes a [rows, cols] row-major matrix row-wise. With threshold > 0 (activations), elements
// with |x| >= threshold are left out of the row statistics and every column holding one is zeroed
// in `q`; their indices go to `outlier_cols` (ascending, capacity `cols`, may be null when
// threshold <= 0) and the count is returned. row_stats[r] = max |x[r, c]| over the kept elements
// (NaN if the row holds a NaN). With threshold 0 this is the weight quantization (CB, SCB).
template <class In>
int64_t quantize_int8_rowwise_reference(const In* x, int64_t rows, int64_t cols, float threshold,
                                        int8_t* q, float* row_stats, int64_t* outlier_cols);

// out[r, c] = q[r, c] * row_stats[r] / 127 in the given order, rounded once to Out.
template <class Out>
void dequantize_int8_rowwise_reference(const int8_t* q, const float* row_stats, int64_t rows,
                                       int64_t cols, Int8DequantOrder order, Out* out);

// out[i, j] = sum_k a[i, k] * b[j, k] accumulated exactly in int32 (b is the [n, k] weight).
// bitsandbytes' CPU path multiplies in fp32 instead, which is exact while 127 * 127 * k < 2^24,
// i.e. k <= 1040; beyond that its result depends on the BLAS summation order.
void int8_gemm_reference(const int8_t* a, const int8_t* b, int64_t m, int64_t n, int64_t k,
                         int32_t* out);

// The LLM.int8 forward of MatMul8bitLt with bitsandbytes' default (PyTorch) CPU kernels:
//   x16 = fp16(x); outliers held back (threshold > 0); CA, SCA = row-wise int8 of x16;
//   y = fp32(int32 GEMM(CA, CB)) * (SCA * SCB) * 6.200124e-05 + bias, rounded to T;
//   y += x[:, outlier cols] @ T(dequant_vectorwise(CB[:, outlier cols]))^T, summed in fp32 in
//   ascending column order and rounded to T once (LibTorch's addmm may sum in another order).
// x: [rows, in_features] in T; cb: [out_features, in_features]; scb: [out_features]; bias:
// [out_features] in T or null; out: [rows, out_features] in T.
template <class T>
void int8_linear_forward_reference(const T* x, int64_t rows, int64_t in_features, const int8_t* cb,
                                   const float* scb, int64_t out_features, const T* bias,
                                   float threshold, T* out);

}  // namespace qlc::kernels
