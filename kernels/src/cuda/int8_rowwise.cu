// LLM.int8 row-wise quantize (with outlier columns) and dequantize, byte-identical to
// int8_rowwise_reference.cc: the per-element arithmetic is int8_rowwise.h's.
#include "cuda_common.cuh"
#include "qlc/kernels/cuda_kernels.h"
#include "qlc/kernels/int8_rowwise.h"

namespace qlc::kernels::cuda {
namespace {

using detail::kFullMask;
using detail::kThreadsPerBlock;
using detail::kWarpSize;

// Pass 1 (threshold > 0): flags[c] = 1 for every column holding an outlier. Concurrent writes all
// store 1, so no atomics are needed.
template <class In>
__global__ void flag_outlier_columns_kernel(const In* __restrict__ x, int64_t total, int64_t cols,
                                            float threshold, uint8_t* __restrict__ flags) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < total && is_int8_outlier(to_float(x[i]), threshold)) flags[i % cols] = 1;
}

// The flagged columns in ascending order (one thread block: a ballot scan per tile of columns),
// and their count.
__global__ void compact_outlier_columns_kernel(const uint8_t* __restrict__ flags, int64_t cols,
                                               int64_t* __restrict__ outlier_cols,
                                               int64_t* __restrict__ count) {
  __shared__ int warp_counts[kThreadsPerBlock / kWarpSize];
  __shared__ int64_t base;
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
  if (threadIdx.x == 0) base = 0;
  __syncthreads();
  for (int64_t start = 0; start < cols; start += blockDim.x) {
    const int64_t c = start + threadIdx.x;
    const bool flagged = c < cols && flags[c] != 0;
    const unsigned ballot = __ballot_sync(kFullMask, flagged);
    if (lane == 0) warp_counts[warp] = __popc(ballot);
    __syncthreads();
    int before = 0;
    for (int w = 0; w < warp; ++w) before += warp_counts[w];
    if (flagged) outlier_cols[base + before + __popc(ballot & ((1u << lane) - 1u))] = c;
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 0; w < kThreadsPerBlock / kWarpSize; ++w) base += warp_counts[w];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) *count = base;
}

// Combines two partial row absmax values (each >= 0 or NaN) with absmax_nan_propagating: NaN
// absorbs, otherwise the larger. Order-independent, except which NaN survives when a row holds
// NaNs of different bit patterns.
__device__ __forceinline__ float combine_absmax(float m, float other) {
  return absmax_nan_propagating(m, other);
}

// Pass 2: one thread block per row: the absmax of the non-outlier elements, then the codes.
template <class In>
__global__ void quantize_int8_rows_kernel(const In* __restrict__ x, int64_t cols, float threshold,
                                          const uint8_t* __restrict__ outlier_flags,
                                          int8_t* __restrict__ q, float* __restrict__ row_stats) {
  __shared__ float partial[kThreadsPerBlock / kWarpSize];
  const int64_t r = blockIdx.x;
  const In* row = x + r * cols;
  float m = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float v = to_float(row[c]);
    if (!is_int8_outlier(v, threshold)) m = absmax_nan_propagating(m, v);
  }
#pragma unroll
  for (int s = kWarpSize / 2; s > 0; s >>= 1) m = combine_absmax(m, __shfl_xor_sync(kFullMask, m, s));
  if (threadIdx.x % kWarpSize == 0) partial[threadIdx.x / kWarpSize] = m;
  __syncthreads();
  m = partial[0];
  for (int w = 1; w < kThreadsPerBlock / kWarpSize; ++w) m = combine_absmax(m, partial[w]);
  if (threadIdx.x == 0) row_stats[r] = m;
  const float scale = int8_row_scale(m);
  int8_t* qrow = q + r * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const bool outlier_col = outlier_flags != nullptr && outlier_flags[c] != 0;
    qrow[c] = outlier_col ? int8_t{0} : quantize_int8_value(to_float(row[c]), scale);
  }
}

// Dequantize: a 2-D launch (columns x rows, rows folded into blockIdx.y / gridDim.y strides) so
// that no thread divides by `cols`.
template <class Out>
__global__ void dequantize_int8_rows_kernel(const int8_t* __restrict__ q,
                                            const float* __restrict__ row_stats, int64_t rows,
                                            int64_t cols, Int8DequantOrder order,
                                            Out* __restrict__ out) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    out[r * cols + c] = from_float<Out>(dequantize_int8_value(q[r * cols + c], row_stats[r], order));
  }
}

void check_int8_args(int64_t rows, int64_t cols, const void* a, const void* b, const void* c,
                     const char* what) {
  if (rows < 0 || cols < 0) throw std::invalid_argument(std::string(what) + ": negative shape");
  if (rows > 0 && cols > 0 && (a == nullptr || b == nullptr || c == nullptr)) {
    throw std::invalid_argument(std::string(what) + ": null buffer");
  }
}

}  // namespace

template <class In>
int64_t quantize_int8_rowwise(const In* x, int64_t rows, int64_t cols, float threshold, int8_t* q,
                              float* row_stats, int64_t* outlier_cols, void* stream) {
  check_int8_args(rows, cols, x, q, row_stats, "quantize_int8_rowwise");
  if (rows == 0 || cols == 0) return 0;
  if (rows > 0x7FFFFFFF) throw std::invalid_argument("quantize_int8_rowwise: too many rows");
  const cudaStream_t s = detail::as_stream(stream);
  int64_t count = 0;
  DeviceBuffer scratch;  // column flags, then the count (8-byte aligned)
  uint8_t* flags = nullptr;
  if (threshold > 0.0f) {
    if (outlier_cols == nullptr) {
      throw std::invalid_argument("quantize_int8_rowwise: threshold > 0 needs outlier_cols");
    }
    const int64_t flag_bytes = detail::ceil_div(cols, 8) * 8;
    scratch = DeviceBuffer(static_cast<size_t>(flag_bytes) + sizeof(int64_t));
    flags = scratch.as<uint8_t>();
    detail::check(cudaMemsetAsync(flags, 0, static_cast<size_t>(cols), s), "cudaMemsetAsync");
    const int64_t total = rows * cols;
    flag_outlier_columns_kernel<In>
        <<<detail::grid_size(total, kThreadsPerBlock, "quantize_int8_rowwise"), kThreadsPerBlock, 0,
           s>>>(x, total, cols, threshold, flags);
    detail::check_launch("flag_outlier_columns_kernel");
    auto* device_count = reinterpret_cast<int64_t*>(flags + flag_bytes);
    compact_outlier_columns_kernel<<<1, kThreadsPerBlock, 0, s>>>(flags, cols, outlier_cols,
                                                                  device_count);
    detail::check_launch("compact_outlier_columns_kernel");
    // The count is the return value, so this path waits for the stream (as .item() would).
    detail::check(cudaMemcpyAsync(&count, device_count, sizeof count, cudaMemcpyDeviceToHost, s),
                  "quantize_int8_rowwise: copying the outlier count");
  }
  quantize_int8_rows_kernel<In><<<static_cast<unsigned>(rows), kThreadsPerBlock, 0, s>>>(
      x, cols, threshold, flags, q, row_stats);
  detail::check_launch("quantize_int8_rows_kernel");
  // `scratch` is freed on return; wait first so the row kernel has finished reading the flags.
  if (flags != nullptr) detail::check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  return count;
}

template <class Out>
void dequantize_int8_rowwise(const int8_t* q, const float* row_stats, int64_t rows, int64_t cols,
                             Int8DequantOrder order, Out* out, void* stream) {
  check_int8_args(rows, cols, q, row_stats, out, "dequantize_int8_rowwise");
  if (rows == 0 || cols == 0) return;
  const dim3 grid(detail::grid_size(cols, kThreadsPerBlock, "dequantize_int8_rowwise"),
                  static_cast<unsigned>(rows < 65535 ? rows : 65535));
  dequantize_int8_rows_kernel<Out><<<grid, kThreadsPerBlock, 0, detail::as_stream(stream)>>>(
      q, row_stats, rows, cols, order, out);
  detail::check_launch("dequantize_int8_rows_kernel");
}

#define QLC_INSTANTIATE_CUDA_INT8(T)                                                            \
  template int64_t quantize_int8_rowwise<T>(const T*, int64_t, int64_t, float, int8_t*, float*, \
                                            int64_t*, void*);                                   \
  template void dequantize_int8_rowwise<T>(const int8_t*, const float*, int64_t, int64_t,       \
                                           Int8DequantOrder, T*, void*);
QLC_INSTANTIATE_CUDA_INT8(float)
QLC_INSTANTIATE_CUDA_INT8(Bf16)
QLC_INSTANTIATE_CUDA_INT8(Fp16)
#undef QLC_INSTANTIATE_CUDA_INT8

}  // namespace qlc::kernels::cuda
