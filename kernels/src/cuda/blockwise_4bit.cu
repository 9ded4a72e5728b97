// NF4 / FP4 blockwise quantize and dequantize. The arithmetic per element is blockwise_4bit.h's
// quantize_4bit_block and codebook_4bit.h's decode_4bit, as in blockwise_4bit_reference.cc.
#include "cuda_common.cuh"
#include "qlc/kernels/cuda_kernels.h"

namespace qlc::kernels::cuda {
namespace {

using detail::kThreadsPerBlock;
using detail::kWarpSize;

// Quantize: one warp per quant block, so the absmax is a warp reduction with no shared memory.
constexpr int kQuantBlocksPerCta = kThreadsPerBlock / kWarpSize;
// Dequantize: each thread turns one 16-byte load of packed codes into 32 outputs. A chunk of 32
// elements never straddles two quant blocks (blocksizes are powers of two >= 32), so it needs a
// single absmax.
constexpr int kPackedPerThread = 16;
constexpr int kOutPerThread = 2 * kPackedPerThread;

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

template <class In>
__global__ void quantize_4bit_kernel(const In* __restrict__ x, int64_t n, int64_t blocksize,
                                     int64_t blocks, Codebook4 codebook, uint8_t* __restrict__ packed,
                                     float* __restrict__ absmax) {
  __shared__ Codebook4 cb;
  detail::stage_table(codebook, cb);
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const int64_t block =
      static_cast<int64_t>(blockIdx.x) * kQuantBlocksPerCta + threadIdx.x / kWarpSize;
  if (block >= blocks) return;  // uniform per warp, so the shuffles below see whole warps
  const int64_t begin = block * blocksize;
  const int64_t end = min64(begin + blocksize, n);
  const bool full = end - begin == blocksize;
  // Each lane owns element pairs (one packed byte each), strided so the warp reads contiguously.
  float m = 0.0f;
  for (int64_t i = begin + 2 * lane; i < end; i += 2 * kWarpSize) {
    m = detail::max_partial(block_absmax(x, i, min64(i + 2, end)), m);
  }
  m = detail::warp_max(m);
  if (lane == 0) absmax[block] = stored_absmax(m, full);
  for (int64_t i = begin + 2 * lane; i < end; i += 2 * kWarpSize) {
    quantize_4bit_block(cb, x, i, min64(i + 2, end), full, m, packed);
  }
}

// One element, exactly as dequantize_4bit_reference's loop body.
template <class Out>
__device__ __forceinline__ void dequantize_4bit_element(const Codebook4& cb,
                                                        const uint8_t* packed,
                                                        const float* absmax, int64_t i,
                                                        int block_shift, Out* out) {
  const uint8_t byte = packed[i >> 1];
  const uint8_t nibble = (i & 1) ? (byte & 0xF) : (byte >> 4);
  out[i] = from_float<Out>(decode_4bit(cb, nibble, absmax[i >> block_shift]));
}

// The 32 outputs of one chunk, converting each (fp32: no conversion; bf16: a few instructions).
template <class Out>
__device__ __forceinline__ void decode_chunk(const Codebook4& cb, const uint4& p, float am,
                                             Out (&v)[kOutPerThread], uint32_t* /*table*/) {
#pragma unroll
  for (int j = 0; j < kPackedPerThread; ++j) {
    const uint8_t byte = detail::byte_of(p, j);
    v[2 * j] = from_float<Out>(decode_4bit(cb, static_cast<uint8_t>(byte >> 4), am));
    v[2 * j + 1] = from_float<Out>(decode_4bit(cb, static_cast<uint8_t>(byte & 0xF), am));
  }
}

// fp16: to_fp16 compiles to some twenty integer instructions per element, which by instruction
// count (not measured: no GPU where this was written) would leave the kernel issue-bound rather
// than memory-bound. A chunk's 32 outputs share one absmax, so they take only 16 distinct values:
// convert those once into this thread's column of a shared table (`table` = &smem[threadIdx.x],
// entry k at table[k * blockDim.x]: one bank per thread, no conflicts), then look up. Same calls,
// same bits, half the conversions.
__device__ __forceinline__ void decode_chunk(const Codebook4& cb, const uint4& p, float am,
                                             Fp16 (&v)[kOutPerThread], uint32_t* table) {
  const unsigned stride = blockDim.x;
#pragma unroll
  for (int k = 0; k < 16; ++k) {
    table[k * stride] = from_float<Fp16>(decode_4bit(cb, static_cast<uint8_t>(k), am)).bits;
  }
#pragma unroll
  for (int j = 0; j < kPackedPerThread; ++j) {
    const uint8_t byte = detail::byte_of(p, j);
    v[2 * j].bits = static_cast<uint16_t>(table[(byte >> 4) * stride]);
    v[2 * j + 1].bits = static_cast<uint16_t>(table[(byte & 0xF) * stride]);
  }
}

// Dynamic shared memory the vectorized kernel needs per thread block (the fp16 table).
template <class Out>
constexpr size_t decode_table_bytes() {
  return std::is_same<Out, Fp16>::value ? 16 * kThreadsPerBlock * sizeof(uint32_t) : 0;
}

// Needs `packed` and `out` 16-byte aligned; the thread after the last full chunk does the tail.
template <class Out>
__global__ void dequantize_4bit_vec_kernel(const uint8_t* __restrict__ packed,
                                           const float* __restrict__ absmax, int64_t n,
                                           int block_shift, Codebook4 codebook,
                                           Out* __restrict__ out) {
  __shared__ Codebook4 cb;
  extern __shared__ uint32_t decode_table[];  // decode_table_bytes<Out>() bytes
  detail::stage_table(codebook, cb);
  const int64_t chunk = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t first = chunk * kOutPerThread;
  if (first + kOutPerThread <= n) {
    const uint4 p = __ldg(reinterpret_cast<const uint4*>(packed) + chunk);
    const float am = __ldg(absmax + (first >> block_shift));
    Out v[kOutPerThread];
    decode_chunk(cb, p, am, v, decode_table + threadIdx.x);
    detail::store_vec16<kOutPerThread>(out + first, v);
  } else {
    for (int64_t i = first; i < n; ++i) dequantize_4bit_element(cb, packed, absmax, i, block_shift, out);
  }
}

// Any alignment: one element per thread.
template <class Out>
__global__ void dequantize_4bit_scalar_kernel(const uint8_t* __restrict__ packed,
                                              const float* __restrict__ absmax, int64_t n,
                                              int block_shift, Codebook4 codebook,
                                              Out* __restrict__ out) {
  __shared__ Codebook4 cb;
  detail::stage_table(codebook, cb);
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dequantize_4bit_element(cb, packed, absmax, i, block_shift, out);
}

void check_4bit_args(int64_t n, int64_t blocksize, const void* a, const void* b, const void* c,
                     const char* what) {
  if (n < 0) throw std::invalid_argument(std::string(what) + ": negative element count");
  if (!is_supported_blocksize(blocksize)) {
    throw std::invalid_argument(std::string(what) + ": blocksize " + std::to_string(blocksize) +
                                " is not a power of two in [32, 4096]");
  }
  if (n > 0 && (a == nullptr || b == nullptr || c == nullptr)) {
    throw std::invalid_argument(std::string(what) + ": null buffer");
  }
}

int log2_exact(int64_t power_of_two) {
  int s = 0;
  while ((int64_t{1} << s) < power_of_two) ++s;
  return s;
}

}  // namespace

template <class In>
void quantize_4bit(const In* x, int64_t n, int64_t blocksize, QuantType4 type, uint8_t* packed,
                   float* absmax, void* stream) {
  check_4bit_args(n, blocksize, x, packed, absmax, "quantize_4bit");
  if (n == 0) return;
  const int64_t blocks = num_blocks(n, blocksize);
  const unsigned grid = detail::grid_size(blocks, kQuantBlocksPerCta, "quantize_4bit");
  quantize_4bit_kernel<In><<<grid, kThreadsPerBlock, 0, detail::as_stream(stream)>>>(
      x, n, blocksize, blocks, codebook4(type), packed, absmax);
  detail::check_launch("quantize_4bit_kernel");
}

template <class Out>
void dequantize_4bit(const uint8_t* packed, const float* absmax, int64_t n, int64_t blocksize,
                     QuantType4 type, Out* out, void* stream) {
  check_4bit_args(n, blocksize, packed, absmax, out, "dequantize_4bit");
  if (n == 0) return;
  const int shift = log2_exact(blocksize);
  if (detail::aligned16(packed) && detail::aligned16(out)) {
    // One thread per full chunk of 32 elements, plus one for the tail if there is one.
    const unsigned grid = detail::grid_size(detail::ceil_div(n, kOutPerThread), kThreadsPerBlock,
                                            "dequantize_4bit");
    dequantize_4bit_vec_kernel<Out>
        <<<grid, kThreadsPerBlock, decode_table_bytes<Out>(), detail::as_stream(stream)>>>(
        packed, absmax, n, shift, codebook4(type), out);
    detail::check_launch("dequantize_4bit_vec_kernel");
  } else {
    const unsigned grid = detail::grid_size(n, kThreadsPerBlock, "dequantize_4bit");
    dequantize_4bit_scalar_kernel<Out><<<grid, kThreadsPerBlock, 0, detail::as_stream(stream)>>>(
        packed, absmax, n, shift, codebook4(type), out);
    detail::check_launch("dequantize_4bit_scalar_kernel");
  }
}

#define QLC_INSTANTIATE_CUDA_4BIT(T)                                                       \
  template void quantize_4bit<T>(const T*, int64_t, int64_t, QuantType4, uint8_t*, float*, \
                                 void*);                                                   \
  template void dequantize_4bit<T>(const uint8_t*, const float*, int64_t, int64_t,         \
                                   QuantType4, T*, void*);
QLC_INSTANTIATE_CUDA_4BIT(float)
QLC_INSTANTIATE_CUDA_4BIT(Bf16)
QLC_INSTANTIATE_CUDA_4BIT(Fp16)
#undef QLC_INSTANTIATE_CUDA_4BIT

}  // namespace qlc::kernels::cuda
