// Double quantization of 4-bit absmax values on the GPU, byte-identical to double_quant_reference.cc.
#include <vector>

#include "blockwise_8bit.cuh"
#include "qlc/kernels/cuda_kernels.h"
#include "qlc/kernels/double_quant.h"

namespace qlc::kernels::cuda {
namespace {

using detail::kThreadsPerBlock;

__global__ void restore_absmax_kernel(const uint8_t* __restrict__ qabsmax,
                                      const float* __restrict__ absmax2, float offset,
                                      int64_t blocks, DynamicMap8 dynamic,
                                      float* __restrict__ absmax_out) {
  __shared__ DynamicMap8 map;
  detail::stage_table(dynamic, map);
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < blocks) {
    // Two fp32 roundings (multiply, then add): --fmad=false keeps nvcc from fusing them.
    absmax_out[i] = decode_8bit(map, qabsmax[i], absmax2[i / kDoubleQuantBlocksize]) + offset;
  }
}

void check_dq_args(int64_t blocks, const void* a, const void* b, const void* c, const char* what) {
  if (blocks < 0) throw std::invalid_argument(std::string(what) + ": negative count");
  if (blocks > 0 && (a == nullptr || b == nullptr || c == nullptr)) {
    throw std::invalid_argument(std::string(what) + ": null buffer");
  }
}

}  // namespace

float double_quantize_absmax(const float* absmax, int64_t blocks, uint8_t* qabsmax, float* absmax2,
                             void* stream) {
  check_dq_args(blocks, absmax, qabsmax, absmax2, "double_quantize_absmax");
  if (blocks == 0) return 0.0f;
  // The offset is computed on the host, on purpose. bitsandbytes takes it as `absmax.mean()`, and
  // the last bits of an fp32 sum depend on the order of the additions: a GPU reduction (ours or
  // torch.mean on CUDA) adds in another order than LibTorch's CPU cascade sum, so its offset -- and
  // with it every centred value, qabsmax and absmax2 -- could differ from bitsandbytes' CPU output
  // and from our CPU paths. torch_cpu_mean reproduces LibTorch's CPU order (8 lanes), so the CUDA
  // result is byte-identical to the CPU one. The copy is `blocks` floats (n / 64 for blocksize 64):
  // small next to the quantization it follows.
  const cudaStream_t s = detail::as_stream(stream);
  std::vector<float> host(static_cast<size_t>(blocks));
  detail::check(cudaMemcpyAsync(host.data(), absmax, host.size() * sizeof(float),
                                cudaMemcpyDeviceToHost, s),
                "double_quantize_absmax: copying absmax to the host");
  detail::check(cudaStreamSynchronize(s), "double_quantize_absmax: cudaStreamSynchronize");
  const float offset = torch_cpu_mean(host.data(), blocks, kTorchMeanLanes);
  // Then absmax - offset through the compiled CPU library's rule, as double_quantize_reference.
  detail::launch_quantize_8bit(detail::CentredLoad{absmax, offset}, blocks, kDoubleQuantBlocksize,
                               /*is_signed=*/true, Search8::kBnbCpuLibrary, qabsmax, absmax2, s);
  return offset;
}

void restore_absmax(const uint8_t* qabsmax, const float* absmax2, float offset, int64_t blocks,
                    float* absmax_out, void* stream) {
  check_dq_args(blocks, qabsmax, absmax2, absmax_out, "restore_absmax");
  if (blocks == 0) return;
  const unsigned grid = detail::grid_size(blocks, kThreadsPerBlock, "restore_absmax");
  restore_absmax_kernel<<<grid, kThreadsPerBlock, 0, detail::as_stream(stream)>>>(
      qabsmax, absmax2, offset, blocks, dynamic_map(true), absmax_out);
  detail::check_launch("restore_absmax_kernel");
}

}  // namespace qlc::kernels::cuda
