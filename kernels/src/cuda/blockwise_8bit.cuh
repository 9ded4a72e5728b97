// The 8-bit blockwise quantize kernel, shared by blockwise_8bit.cu and double_quant.cu (which
// quantizes absmax - offset). Per element it runs quantize_8bit_reference's loop body.
#pragma once

#include "cuda_common.cuh"
#include "qlc/kernels/block_scale.h"
#include "qlc/kernels/blockwise_8bit.h"

namespace qlc::kernels::cuda::detail {

constexpr int kQuant8BlocksPerCta = kThreadsPerBlock / kWarpSize;  // one warp per quant block

// Reads element i of the input as fp32.
template <class In>
struct ElementLoad {
  const In* x;
  __device__ __forceinline__ float operator()(int64_t i) const { return to_float(x[i]); }
};

// absmax[i] - offset, rounded in fp32 as double_quantize_reference's `centred` vector.
struct CentredLoad {
  const float* x;
  float offset;
  __device__ __forceinline__ float operator()(int64_t i) const { return x[i] - offset; }
};

template <class Load>
__global__ void quantize_8bit_kernel(Load load, int64_t n, int64_t blocksize, int64_t blocks,
                                     DynamicMap8 dynamic, Search8 search,
                                     uint8_t* __restrict__ out, float* __restrict__ absmax) {
  __shared__ DynamicMap8 map;
  stage_table(dynamic, map);
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const int64_t block =
      static_cast<int64_t>(blockIdx.x) * kQuant8BlocksPerCta + threadIdx.x / kWarpSize;
  if (block >= blocks) return;  // uniform per warp
  const int64_t begin = block * blocksize;
  const int64_t end = begin + blocksize < n ? begin + blocksize : n;
  float am = 0.0f;
  for (int64_t i = begin + lane; i < end; i += kWarpSize) {
    const float v = load(i);
    am = max_partial(block_absmax(&v, 0, 1), am);  // |v|, or 0 for NaN as in block_absmax
  }
  am = warp_max(am);
  if (search == Search8::kBnbCpuLibrary) {
    if (lane == 0) absmax[block] = am;  // the library neither clamps nor treats short blocks apart
    const float inv = 1.0f / am;
    for (int64_t i = begin + lane; i < end; i += kWarpSize) {
      out[i] = am == 0.0f ? 0 : encode_8bit_bnb_library(map, load(i) * inv);
    }
  } else {
    const bool full = end - begin == blocksize;
    if (lane == 0) absmax[block] = stored_absmax(am, full);
    for (int64_t i = begin + lane; i < end; i += kWarpSize) {
      out[i] = encode_8bit_nearest(map, scale_to_unit(load(i), am, full));
    }
  }
}

// Launches quantize_8bit_kernel over n elements read through `load`.
template <class Load>
void launch_quantize_8bit(Load load, int64_t n, int64_t blocksize, bool is_signed, Search8 search,
                          uint8_t* out, float* absmax, cudaStream_t stream) {
  const int64_t blocks = ceil_div(n, blocksize);
  const unsigned grid = grid_size(blocks, kQuant8BlocksPerCta, "quantize_8bit");
  quantize_8bit_kernel<Load><<<grid, kThreadsPerBlock, 0, stream>>>(
      load, n, blocksize, blocks, dynamic_map(is_signed), search, out, absmax);
  check_launch("quantize_8bit_kernel");
}

}  // namespace qlc::kernels::cuda::detail
