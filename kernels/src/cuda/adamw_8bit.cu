// 8-bit blockwise AdamW (bnb.optim.AdamW8bit) and its paged variant on the GPU, bit-identical to
// adamw_8bit_states_reference: per element the QLC_HD functions of adamw.h.
#include "adamw_common.cuh"
#include "qlc/kernels/cuda_kernels.h"

namespace qlc::kernels::cuda {
namespace {

using detail::kThreadsPerBlock;
using detail::kWarpSize;

// Both 8-bit maps travel as one kernel argument (4 KB; CUDA >= 12.1 takes up to 32 KB of kernel
// parameters on sm_70 and newer, which covers every architecture we build) and are staged into
// shared memory once per thread block.
struct AdamWMaps {
  DynamicMap8 m;  // signed: first moment
  DynamicMap8 v;  // unsigned: second moment
};

// 8-bit states: one warp per 256-element state block, eight elements per lane kept in registers
// between the update and the requantization under the block's new absmax.
constexpr int kStateBlocksPerCta = kThreadsPerBlock / kWarpSize;
constexpr int kPerLane = static_cast<int>(kAdamW8bitBlocksize) / kWarpSize;

template <class P, class G>
__global__ void adamw_8bit_kernel(P* __restrict__ p, const G* __restrict__ g, AdamW8bitStates st,
                                  int64_t n, int64_t blocks, AdamWScalars s, AdamWMaps maps_arg) {
  __shared__ AdamWMaps maps;
  detail::stage_table(maps_arg, maps);
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const int64_t block =
      static_cast<int64_t>(blockIdx.x) * kStateBlocksPerCta + threadIdx.x / kWarpSize;
  if (block >= blocks) return;  // uniform per warp
  const int64_t begin = block * kAdamW8bitBlocksize;
  const int64_t len = n - begin < kAdamW8bitBlocksize ? n - begin : kAdamW8bitBlocksize;
  const float old_absmax_m = st.m_absmax[block];
  const float old_absmax_v = st.v_absmax[block];
  float new_m[kPerLane];
  float new_v[kPerLane];
  float am_m = 0.0f;
  float am_v = 0.0f;
#pragma unroll
  for (int k = 0; k < kPerLane; ++k) {
    const int64_t j = lane + k * kWarpSize;
    new_m[k] = 0.0f;
    new_v[k] = 0.0f;
    if (j < len) {
      const int64_t i = begin + j;
      float m = decode_8bit(maps.m, st.m[i], old_absmax_m);
      float v = decode_8bit(maps.v, st.v[i], old_absmax_v);
      float pi = to_float(p[i]);
      if (bnb8_adamw_element(to_float(g[i]), s, pi, m, v)) p[i] = from_float<P>(pi);
      new_m[k] = m;
      new_v[k] = v;
      // block_absmax of the new moments, one element at a time, combined across lanes below.
      am_m = detail::max_partial(block_absmax(&m, 0, 1), am_m);
      am_v = detail::max_partial(block_absmax(&v, 0, 1), am_v);
    }
  }
  am_m = detail::warp_max(am_m);  // also orders every lane's read of the old absmax before the write
  am_v = detail::warp_max(am_v);
  if (lane == 0) {
    st.m_absmax[block] = am_m;
    st.v_absmax[block] = am_v;
  }
  const float inv_m = 1.0f / am_m;
  const float inv_v = 1.0f / am_v;
#pragma unroll
  for (int k = 0; k < kPerLane; ++k) {
    const int64_t j = lane + k * kWarpSize;
    if (j < len) {
      st.m[begin + j] = encode_state_8bit(maps.m, new_m[k], am_m, inv_m);
      st.v[begin + j] = encode_state_8bit(maps.v, new_v[k], am_v, inv_v);
    }
  }
}

}  // namespace

template <class P, class G>
void adamw_8bit_step(P* p, const G* g, const AdamW8bitStates& states, int64_t n,
                     const AdamWConfig& config, int64_t step, void* stream) {
  detail::check_step_args(n, config, step, "adamw_8bit_step");
  if (n == 0) return;
  if (p == nullptr || g == nullptr || states.m == nullptr || states.v == nullptr ||
      states.m_absmax == nullptr || states.v_absmax == nullptr) {
    throw std::invalid_argument("adamw_8bit_step: null buffer");
  }
  const int64_t blocks = detail::ceil_div(n, kAdamW8bitBlocksize);
  const unsigned grid = detail::grid_size(blocks, kStateBlocksPerCta, "adamw_8bit_step");
  adamw_8bit_kernel<P, G><<<grid, kThreadsPerBlock, 0, detail::as_stream(stream)>>>(
      p, g, states, n, blocks, adamw_scalars(config, step),
      AdamWMaps{dynamic_map(true), dynamic_map(false)});
  detail::check_launch("adamw_8bit_kernel");
}

template <class P, class G>
void paged_adamw_8bit_step(P* p, const G* g, const AdamW8bitStates& states, int64_t n,
                           const AdamWConfig& config, int64_t step, void* stream) {
  detail::check_step_args(n, config, step, "paged_adamw_8bit_step");
  if (n == 0) return;
  const cudaStream_t s = detail::as_stream(stream);
  detail::prefetch_to_device(states.m, static_cast<size_t>(n), s);
  detail::prefetch_to_device(states.v, static_cast<size_t>(n), s);
  adamw_8bit_step(p, g, states, n, config, step, stream);
}

#define QLC_INSTANTIATE_CUDA_ADAMW8(P, G)                                                  \
  template void adamw_8bit_step<P, G>(P*, const G*, const AdamW8bitStates&, int64_t,       \
                                      const AdamWConfig&, int64_t, void*);                 \
  template void paged_adamw_8bit_step<P, G>(P*, const G*, const AdamW8bitStates&, int64_t, \
                                            const AdamWConfig&, int64_t, void*);
#define QLC_INSTANTIATE_CUDA_ADAMW8_P(P) \
  QLC_INSTANTIATE_CUDA_ADAMW8(P, float)  \
  QLC_INSTANTIATE_CUDA_ADAMW8(P, Bf16)   \
  QLC_INSTANTIATE_CUDA_ADAMW8(P, Fp16)
QLC_INSTANTIATE_CUDA_ADAMW8_P(float)
QLC_INSTANTIATE_CUDA_ADAMW8_P(Bf16)
QLC_INSTANTIATE_CUDA_ADAMW8_P(Fp16)
#undef QLC_INSTANTIATE_CUDA_ADAMW8_P
#undef QLC_INSTANTIATE_CUDA_ADAMW8

}  // namespace qlc::kernels::cuda
