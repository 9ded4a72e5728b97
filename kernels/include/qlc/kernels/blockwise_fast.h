// The fast CPU path of the blockwise formats: the same functions as the scalar references in
// blockwise_4bit.h / blockwise_8bit.h (same signatures, bit-identical results for every input),
// vectorized with run-time ISA dispatch (cpu_features.h) and split over threads at block
// granularity with parallel_for, so each thread writes disjoint outputs and the bits never depend
// on the thread count.
//
// Arguments are assumed valid (the tensor-level API checks them). Blocksizes that are not a
// multiple of 32 (4-bit) fall back to the scalar reference; 8-bit takes any blocksize >= 1.
// Large 32-byte-aligned outputs of the dequantizers are written with streaming stores.
#pragma once

#include <cstdint>

#include "qlc/kernels/blockwise_4bit.h"
#include "qlc/kernels/blockwise_8bit.h"
#include "qlc/kernels/cpu_features.h"

namespace qlc::kernels {

// How a fast kernel runs. Results are the same bits for every setting; tests vary both fields.
struct FastConfig {
  // Kernels to use; clamped to what this CPU runs (at kAvx512, 4-bit quantization and the 8-bit
  // AdamW step have AVX-512 code; every other kernel runs its AVX2 code).
  CpuIsa isa = active_cpu_isa();
  // 0: one contiguous chunk of blocks per thread (parallel_for's split). Otherwise the blocks are
  // cut into exactly this many contiguous chunks, run on up to num_threads() threads.
  int64_t chunks = 0;
};

// The kernel family a config really runs: the requested ISA clamped to what this CPU and build
// run (kScalar, kAvx2 or kAvx512).
CpuIsa fast_kernel_isa(const FastConfig& config);

template <class In>
void quantize_4bit_fast(const In* x, int64_t n, int64_t blocksize, QuantType4 type, uint8_t* packed,
                        float* absmax);
template <class In>
void quantize_4bit_fast_with(const In* x, int64_t n, int64_t blocksize, QuantType4 type,
                             uint8_t* packed, float* absmax, const FastConfig& config);

// quantize_4bit_fast_with that refuses NaN and Inf: returns false when x holds one, with packed
// and absmax then partly written. Each thread checks each run of blocks just before quantizing
// it, while the run is in cache, so the check adds no pass over memory; all stop at the first
// find. Same codes as quantize_4bit_fast_with when it returns true.
template <class In>
bool quantize_4bit_fast_finite(const In* x, int64_t n, int64_t blocksize, QuantType4 type,
                               uint8_t* packed, float* absmax, const FastConfig& config = FastConfig{});

template <class Out>
void dequantize_4bit_fast(const uint8_t* packed, const float* absmax, int64_t n, int64_t blocksize,
                          QuantType4 type, Out* out);
template <class Out>
void dequantize_4bit_fast_with(const uint8_t* packed, const float* absmax, int64_t n,
                               int64_t blocksize, QuantType4 type, Out* out,
                               const FastConfig& config);

template <class In>
void quantize_8bit_fast(const In* x, int64_t n, int64_t blocksize, bool is_signed, Search8 search,
                        uint8_t* out, float* absmax);
template <class In>
void quantize_8bit_fast_with(const In* x, int64_t n, int64_t blocksize, bool is_signed,
                             Search8 search, uint8_t* out, float* absmax, const FastConfig& config);

template <class Out>
void dequantize_8bit_fast(const uint8_t* q, const float* absmax, int64_t n, int64_t blocksize,
                          bool is_signed, Out* out);
template <class Out>
void dequantize_8bit_fast_with(const uint8_t* q, const float* absmax, int64_t n, int64_t blocksize,
                               bool is_signed, Out* out, const FastConfig& config);

}  // namespace qlc::kernels
