// AdamW with fp32 states (bitsandbytes' 32-bit AdamW) and with states in the parameter dtype
// (torch.optim.AdamW) on the GPU, bit-identical to adamw_fp32_states_reference /
// adamw_param_states_reference: per element the QLC_HD functions of adamw.h.
#include "adamw_common.cuh"
#include "qlc/kernels/cuda_kernels.h"

namespace qlc::kernels::cuda {
namespace {

using detail::kThreadsPerBlock;

template <class P, class G>
__global__ void adamw_fp32_kernel(P* __restrict__ p, const G* __restrict__ g, float* __restrict__ m,
                                  float* __restrict__ v, int64_t n, AdamWScalars s) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float mi = m[i];
  float vi = v[i];
  bnb_adam_moments(to_float(g[i]), s, mi, vi);
  m[i] = mi;
  v[i] = vi;
  p[i] = from_float<P>(bnb32_adamw_param(to_float(p[i]), mi, vi, s));
}

template <class T>
__global__ void adamw_param_states_kernel(T* __restrict__ p, const T* __restrict__ g,
                                          T* __restrict__ m, T* __restrict__ v, int64_t n,
                                          AdamWScalars s) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) torch_adamw_element(p[i], g[i], m[i], v[i], s);
}

}  // namespace

template <class P, class G>
void adamw_fp32_states_step(P* p, const G* g, float* m, float* v, int64_t n,
                            const AdamWConfig& config, int64_t step, void* stream) {
  detail::check_step_args(n, config, step, "adamw_fp32_states_step");
  if (n == 0) return;
  if (p == nullptr || g == nullptr || m == nullptr || v == nullptr) {
    throw std::invalid_argument("adamw_fp32_states_step: null buffer");
  }
  const unsigned grid = detail::grid_size(n, kThreadsPerBlock, "adamw_fp32_states_step");
  adamw_fp32_kernel<P, G><<<grid, kThreadsPerBlock, 0, detail::as_stream(stream)>>>(
      p, g, m, v, n, adamw_scalars(config, step));
  detail::check_launch("adamw_fp32_kernel");
}

template <class T>
void adamw_param_states_step(T* p, const T* g, T* m, T* v, int64_t n, const AdamWConfig& config,
                             int64_t step, void* stream) {
  detail::check_step_args(n, config, step, "adamw_param_states_step");
  if (n == 0) return;
  if (p == nullptr || g == nullptr || m == nullptr || v == nullptr) {
    throw std::invalid_argument("adamw_param_states_step: null buffer");
  }
  const unsigned grid = detail::grid_size(n, kThreadsPerBlock, "adamw_param_states_step");
  adamw_param_states_kernel<T><<<grid, kThreadsPerBlock, 0, detail::as_stream(stream)>>>(
      p, g, m, v, n, adamw_scalars(config, step));
  detail::check_launch("adamw_param_states_kernel");
}

#define QLC_INSTANTIATE_CUDA_ADAMW32(P, G)                                          \
  template void adamw_fp32_states_step<P, G>(P*, const G*, float*, float*, int64_t, \
                                             const AdamWConfig&, int64_t, void*);
#define QLC_INSTANTIATE_CUDA_ADAMW_DENSE_P(P)                                                  \
  QLC_INSTANTIATE_CUDA_ADAMW32(P, float)                                                       \
  QLC_INSTANTIATE_CUDA_ADAMW32(P, Bf16)                                                        \
  QLC_INSTANTIATE_CUDA_ADAMW32(P, Fp16)                                                        \
  template void adamw_param_states_step<P>(P*, const P*, P*, P*, int64_t, const AdamWConfig&, \
                                           int64_t, void*);
QLC_INSTANTIATE_CUDA_ADAMW_DENSE_P(float)
QLC_INSTANTIATE_CUDA_ADAMW_DENSE_P(Bf16)
QLC_INSTANTIATE_CUDA_ADAMW_DENSE_P(Fp16)
#undef QLC_INSTANTIATE_CUDA_ADAMW_DENSE_P
#undef QLC_INSTANTIATE_CUDA_ADAMW32

}  // namespace qlc::kernels::cuda
