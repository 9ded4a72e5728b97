// Per-block scaling shared by the 4-bit and 8-bit blockwise formats (host and device).
#pragma once

#include <cstdint>

#include "qlc/kernels/float_bits.h"
#include "qlc/kernels/host_device.h"

namespace qlc::kernels {

// Smallest absmax used as a divisor: bitsandbytes' reference clamps to 1e-38 so that an all-zero
// block scales to 0 instead of NaN.
constexpr float kMinAbsmax = 1e-38f;

// absmax of one block: the largest |x| (0 for an all-zero block).
template <class In>
QLC_HD float block_absmax(const In* x, int64_t begin, int64_t end) {
  float m = 0.0f;
  for (int64_t i = begin; i < end; ++i) {
    const float v = to_float(x[i]);
    const float a = v < 0.0f ? -v : v;
    m = a > m ? a : m;
  }
  return m;
}

// The absmax bitsandbytes stores: a full block's as found, a short last block's after the clamp.
QLC_HD float stored_absmax(float absmax, bool full_block) {
  return full_block || absmax > kMinAbsmax ? absmax : kMinAbsmax;
}

// Scales `v` into [-1, 1]. bitsandbytes multiplies full blocks by the reciprocal of the absmax but
// divides the short last block by it; the two round differently, so both are kept.
QLC_HD float scale_to_unit(float v, float absmax, bool full_block) {
  const float am = absmax > kMinAbsmax ? absmax : kMinAbsmax;
  const float s = full_block ? v * (1.0f / am) : v / am;
  return s < -1.0f ? -1.0f : (s > 1.0f ? 1.0f : s);
}

}  // namespace qlc::kernels
