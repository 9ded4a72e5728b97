// Private helpers of the CUDA launchers: error checks, launch geometry, code-book staging and
// 16-byte vector stores. Only .cu files include this.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "qlc/kernels/float_bits.h"

namespace qlc::kernels::cuda::detail {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xFFFFFFFFu;
constexpr int kThreadsPerBlock = 256;

// Throws std::runtime_error("<what>: <the runtime's error text>") unless status is cudaSuccess.
void check(cudaError_t status, const char* what);
// Checks the launch just made (configuration errors; execution errors surface at synchronize).
void check_launch(const char* kernel);

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Grid size for `items` work items of `per_block` each; throws past CUDA's grid limit.
unsigned grid_size(int64_t items, int64_t per_block, const char* kernel);

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Copies a code book passed by value as a kernel argument (in constant/parameter space) into
// shared memory, word by word across the thread block. Lookups by a per-thread index (a nibble, a
// binary-search probe) then hit shared memory instead of serialising on the constant cache. The
// table itself stays the one built in codebook_4bit.cc / dynamic_map.cc.
template <class Table>
__device__ void stage_table(const Table& src, Table& dst) {
  static_assert(sizeof(Table) % 4 == 0 && std::is_trivially_copyable<Table>::value,
                "tables are copied as 32-bit words");
  const auto* s = reinterpret_cast<const uint32_t*>(&src);
  auto* d = reinterpret_cast<uint32_t*>(&dst);
  for (int w = static_cast<int>(threadIdx.x); w < static_cast<int>(sizeof(Table) / 4);
       w += static_cast<int>(blockDim.x)) {
    d[w] = s[w];
  }
  __syncthreads();
}

// Largest of two partial absmax values, with block_absmax's comparison (partials are never NaN:
// block_absmax skips NaN elements, so the order of combination cannot change the result).
__device__ __forceinline__ float max_partial(float a, float m) { return a > m ? a : m; }

__device__ __forceinline__ float warp_max(float m) {
#pragma unroll
  for (int s = kWarpSize / 2; s > 0; s >>= 1) m = max_partial(__shfl_xor_sync(kFullMask, m, s), m);
  return m;
}

// The 32-bit word holding element(s) v[0] (and v[1] for 16-bit types), little-endian order.
__device__ __forceinline__ uint32_t word_of(const float* v) { return __float_as_uint(v[0]); }
__device__ __forceinline__ uint32_t word_of(const Bf16* v) {
  return static_cast<uint32_t>(v[0].bits) | (static_cast<uint32_t>(v[1].bits) << 16);
}
__device__ __forceinline__ uint32_t word_of(const Fp16* v) {
  return static_cast<uint32_t>(v[0].bits) | (static_cast<uint32_t>(v[1].bits) << 16);
}

// Stores kCount values to a 16-byte aligned `dst` with 16-byte stores.
template <int kCount, class Out>
__device__ __forceinline__ void store_vec16(Out* dst, const Out (&v)[kCount]) {
  constexpr int kPerWord = 4 / static_cast<int>(sizeof(Out));
  static_assert(kCount * sizeof(Out) % 16 == 0, "whole 16-byte vectors only");
  auto* d = reinterpret_cast<uint4*>(dst);
#pragma unroll
  for (int k = 0; k < kCount * static_cast<int>(sizeof(Out)) / 16; ++k) {
    const int e = k * 4 * kPerWord;
    d[k] = make_uint4(word_of(&v[e]), word_of(&v[e + kPerWord]), word_of(&v[e + 2 * kPerWord]),
                      word_of(&v[e + 3 * kPerWord]));
  }
}

// Byte j (0..15) of a 16-byte vector.
__device__ __forceinline__ uint8_t byte_of(const uint4& p, int j) {
  const uint32_t w = j < 4 ? p.x : (j < 8 ? p.y : (j < 12 ? p.z : p.w));
  return static_cast<uint8_t>(w >> (8 * (j & 3)));
}

}  // namespace qlc::kernels::cuda::detail
