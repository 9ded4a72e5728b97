// 8-bit blockwise quantization with a dynamic map: one fp32 absmax per block, one byte per value.
//
// bitsandbytes has two CPU quantizers that disagree on some values, and we reproduce both:
//  - kBnbCpuLibrary: its compiled CPU library (cquantize_blockwise_cpu_*), which quantize_4bit
//    uses for double quantization on CPU. It multiplies by 1/absmax, snaps the value to a grid of
//    65,536 points over [-1, 1] and takes the code nearest to that grid point (a lookup table in
//    the library; computed here on the fly, which gives the same index). An all-zero block stores
//    index 0 everywhere.
//  - kNearest: its PyTorch backend (torch.bucketize over midpoints): the exact nearest code, ties
//    to the lower one, with the 4-bit path's reciprocal / division rule for full / short blocks.
#pragma once

#include <cstdint>

#include "qlc/kernels/dynamic_map.h"
#include "qlc/kernels/float_bits.h"

namespace qlc::kernels {

enum class Search8 : uint8_t { kBnbCpuLibrary, kNearest };

constexpr int kBnbLutSize = 65536;

// The library's grid snap: ((v + 1) * 0.5) * 65535 + 0.5, truncated, each step rounded in fp32
// (its AVX2 kernel issues separate multiplies and adds), then the grid point -1 + 2k / 65535.
QLC_HD float snap_to_bnb_grid(float v) {
  v = v > -1.0f ? v : -1.0f;  // max(v, -1) as _mm256_max_ps: a NaN becomes -1
  v = v < 1.0f ? v : 1.0f;
  float t = (v + 1.0f) * 0.5f;
  t = t * static_cast<float>(kBnbLutSize - 1);
  t = t + 0.5f;
  const int k = static_cast<int>(t);
  return -1.0f + (2.0f * static_cast<float>(k)) / static_cast<float>(kBnbLutSize - 1);
}

QLC_HD uint8_t encode_8bit_bnb_library(const DynamicMap8& map, float scaled) {
  return encode_8bit_nearest(map, snap_to_bnb_grid(scaled));
}

// absmax[b] = max |x| over block b; out[i] = code index of x[i] / absmax.
template <class In>
void quantize_8bit_reference(const In* x, int64_t n, int64_t blocksize, const DynamicMap8& map,
                             Search8 search, uint8_t* out, float* absmax);

template <class Out>
void dequantize_8bit_reference(const uint8_t* q, const float* absmax, int64_t n, int64_t blocksize,
                               const DynamicMap8& map, Out* out);

// The same with the project's default signed / unsigned map (dynamic_map(is_signed)).
template <class In>
void quantize_8bit_reference(const In* x, int64_t n, int64_t blocksize, bool is_signed,
                             Search8 search, uint8_t* out, float* absmax) {
  quantize_8bit_reference(x, n, blocksize, dynamic_map(is_signed), search, out, absmax);
}
template <class Out>
void dequantize_8bit_reference(const uint8_t* q, const float* absmax, int64_t n, int64_t blocksize,
                               bool is_signed, Out* out) {
  dequantize_8bit_reference(q, absmax, n, blocksize, dynamic_map(is_signed), out);
}

}  // namespace qlc::kernels
