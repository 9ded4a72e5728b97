// The CUDA side of the tensor API, behind a header without CUDA types. The tensor functions check
// and allocate (device-generic ATen); these run the CUDA launchers of cuda_kernels.h on the
// tensors' device and LibTorch's current stream. All tensors are contiguous, on one CUDA device,
// of the dtypes the launchers take. Implemented in cuda_backend.cc, the one file that needs a
// CUDA LibTorch; in a build without it every function throws KernelInputError("... built without
// CUDA kernels ...").
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "qlc/kernels/blockwise_8bit.h"
#include "qlc/kernels/codebook_4bit.h"
#include "qlc/kernels/int8_rowwise.h"

namespace qlc::kernels::detail::cuda_backend {

void quantize_4bit(const char* function, const at::Tensor& x, int64_t blocksize, QuantType4 type,
                   const at::Tensor& packed, const at::Tensor& absmax);
void dequantize_4bit(const char* function, const at::Tensor& packed, const at::Tensor& absmax,
                     int64_t n, int64_t blocksize, QuantType4 type, const at::Tensor& out);
// Returns the offset; writes qabsmax (uint8) and absmax2 (fp32).
float double_quantize(const char* function, const at::Tensor& absmax, const at::Tensor& qabsmax,
                      const at::Tensor& absmax2);

void quantize_8bit(const char* function, const at::Tensor& x, int64_t blocksize, bool is_signed,
                   Search8 search, const at::Tensor& q, const at::Tensor& absmax);
void dequantize_8bit(const char* function, const at::Tensor& q, const at::Tensor& absmax,
                     int64_t blocksize, bool is_signed, const at::Tensor& out);

// x [rows, cols] fp32/fp16/bf16; returns the number of outlier columns written to outlier_cols.
int64_t quantize_int8_rowwise(const char* function, const at::Tensor& x, float threshold,
                              const at::Tensor& q, const at::Tensor& row_stats,
                              const at::Tensor& outlier_cols);
void dequantize_int8_rowwise(const char* function, const at::Tensor& q, const at::Tensor& row_stats,
                             Int8DequantOrder order, const at::Tensor& out);

}  // namespace qlc::kernels::detail::cuda_backend
