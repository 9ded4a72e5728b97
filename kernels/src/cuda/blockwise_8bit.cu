// 8-bit blockwise quantize / dequantize with bitsandbytes' dynamic map (both Search8 rules).
// Per element: dynamic_map.h / blockwise_8bit.h, as in blockwise_8bit_reference.cc.
#include "blockwise_8bit.cuh"
#include "qlc/kernels/cuda_kernels.h"

namespace qlc::kernels::cuda {
namespace {

using detail::kThreadsPerBlock;

// Dequantize: one 16-byte load of codes per thread -> 16 outputs sharing one absmax (the
// vectorized kernel runs only when the blocksize is a multiple of 16).
constexpr int kCodesPerThread = 16;

template <class Out>
__global__ void dequantize_8bit_vec_kernel(const uint8_t* __restrict__ q,
                                           const float* __restrict__ absmax, int64_t n,
                                           int64_t blocksize, DynamicMap8 dynamic,
                                           Out* __restrict__ out) {
  __shared__ DynamicMap8 map;
  detail::stage_table(dynamic, map);
  const int64_t chunk = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t first = chunk * kCodesPerThread;
  if (first + kCodesPerThread <= n) {
    const uint4 p = __ldg(reinterpret_cast<const uint4*>(q) + chunk);
    const float am = __ldg(absmax + first / blocksize);
    Out v[kCodesPerThread];
#pragma unroll
    for (int j = 0; j < kCodesPerThread; ++j) {
      v[j] = from_float<Out>(decode_8bit(map, detail::byte_of(p, j), am));
    }
    detail::store_vec16<kCodesPerThread>(out + first, v);
  } else {
    for (int64_t i = first; i < n; ++i) {
      out[i] = from_float<Out>(decode_8bit(map, q[i], absmax[i / blocksize]));
    }
  }
}

template <class Out>
__global__ void dequantize_8bit_scalar_kernel(const uint8_t* __restrict__ q,
                                              const float* __restrict__ absmax, int64_t n,
                                              int64_t blocksize, DynamicMap8 dynamic,
                                              Out* __restrict__ out) {
  __shared__ DynamicMap8 map;
  detail::stage_table(dynamic, map);
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = from_float<Out>(decode_8bit(map, q[i], absmax[i / blocksize]));
}

void check_8bit_args(int64_t n, int64_t blocksize, const void* a, const void* b, const void* c,
                     const char* what) {
  if (n < 0) throw std::invalid_argument(std::string(what) + ": negative element count");
  if (blocksize < 1) {
    throw std::invalid_argument(std::string(what) + ": blocksize " + std::to_string(blocksize) +
                                " must be positive");
  }
  if (n > 0 && (a == nullptr || b == nullptr || c == nullptr)) {
    throw std::invalid_argument(std::string(what) + ": null buffer");
  }
}

}  // namespace

template <class In>
void quantize_8bit_blockwise(const In* x, int64_t n, int64_t blocksize, bool is_signed,
                             Search8 search, uint8_t* out, float* absmax, void* stream) {
  check_8bit_args(n, blocksize, x, out, absmax, "quantize_8bit_blockwise");
  if (n == 0) return;
  detail::launch_quantize_8bit(detail::ElementLoad<In>{x}, n, blocksize, is_signed, search, out,
                               absmax, detail::as_stream(stream));
}

template <class Out>
void dequantize_8bit_blockwise(const uint8_t* q, const float* absmax, int64_t n, int64_t blocksize,
                               bool is_signed, Out* out, void* stream) {
  check_8bit_args(n, blocksize, q, absmax, out, "dequantize_8bit_blockwise");
  if (n == 0) return;
  const DynamicMap8& map = dynamic_map(is_signed);
  if (blocksize % kCodesPerThread == 0 && detail::aligned16(q) && detail::aligned16(out)) {
    const unsigned grid = detail::grid_size(detail::ceil_div(n, kCodesPerThread), kThreadsPerBlock,
                                            "dequantize_8bit_blockwise");
    dequantize_8bit_vec_kernel<Out><<<grid, kThreadsPerBlock, 0, detail::as_stream(stream)>>>(
        q, absmax, n, blocksize, map, out);
    detail::check_launch("dequantize_8bit_vec_kernel");
  } else {
    const unsigned grid = detail::grid_size(n, kThreadsPerBlock, "dequantize_8bit_blockwise");
    dequantize_8bit_scalar_kernel<Out><<<grid, kThreadsPerBlock, 0, detail::as_stream(stream)>>>(
        q, absmax, n, blocksize, map, out);
    detail::check_launch("dequantize_8bit_scalar_kernel");
  }
}

#define QLC_INSTANTIATE_CUDA_8BIT(T)                                                          \
  template void quantize_8bit_blockwise<T>(const T*, int64_t, int64_t, bool, Search8, uint8_t*, \
                                           float*, void*);                                     \
  template void dequantize_8bit_blockwise<T>(const uint8_t*, const float*, int64_t, int64_t,    \
                                             bool, T*, void*);
QLC_INSTANTIATE_CUDA_8BIT(float)
QLC_INSTANTIATE_CUDA_8BIT(Bf16)
QLC_INSTANTIATE_CUDA_8BIT(Fp16)
#undef QLC_INSTANTIATE_CUDA_8BIT

}  // namespace qlc::kernels::cuda
