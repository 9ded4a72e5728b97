// Double quantization of 4-bit absmax values (QLoRA): offset = mean(absmax), then absmax - offset
// quantized with the signed 8-bit dynamic map in blocks of 256, one fp32 absmax per 256 scales.
// Restored as code8[q] * absmax2[i / 256] + offset. Saves 0.5 - 0.127 bits per parameter at
// blocksize 64.
#pragma once

#include <cstdint>

#include "qlc/kernels/dynamic_map.h"

namespace qlc::kernels {

constexpr int64_t kDoubleQuantBlocksize = 256;

// LibTorch's fp32 sum of a contiguous vector on one thread (cascade_sum: four partial vectors
// of `lanes` floats, summed in levels, then the tail, then the lanes), divided by n in fp32.
// bitsandbytes takes the offset as `absmax.mean()`, so its bits depend on that order; `lanes` is
// the width of LibTorch's Vectorized<float> on the machine (8 with AVX2, 16 with AVX-512).
float torch_cpu_mean(const float* x, int64_t n, int lanes);
// The lane count of LibTorch's fp32 sum on x86-64: 8 on AVX2 machines and, with LibTorch 2.13, on
// AVX-512 machines too (its sum kernel is not dispatched to AVX-512: the peer tests reproduce
// bitsandbytes' offsets with 8 lanes on an AVX-512 Xeon); libtorch_agreement_test.cc checks it
// against the LibTorch we link.
constexpr int kTorchMeanLanes = 8;

// qabsmax[i], absmax2[ceil(blocks / 256)] for absmax - offset, with `map` (a signed dynamic map;
// the project's default when omitted) and bitsandbytes' compiled CPU search.
void double_quantize_reference(const float* absmax, int64_t blocks, float offset, uint8_t* qabsmax,
                               float* absmax2, const DynamicMap8& map = dynamic_map(true));

// absmax_out[i] = map[qabsmax[i]] * absmax2[i / 256] + offset (two fp32 roundings).
void restore_absmax_reference(const uint8_t* qabsmax, const float* absmax2, float offset,
                              int64_t blocks, float* absmax_out,
                              const DynamicMap8& map = dynamic_map(true));

}  // namespace qlc::kernels
