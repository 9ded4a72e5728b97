// bitsandbytes' 8-bit dynamic map (create_dynamic_map): a dynamic exponent, then a fraction
// with 2^i (signed) or 2^(i+1) (unsigned) midpoints per decade 10^(i-6), plus 0 and 1.0, sorted.
// Used for the double quantization of 4-bit absmax values and for 8-bit optimizer states.
#pragma once

#include <cstdint>

#include "qlc/kernels/host_device.h"

namespace qlc::kernels {

struct DynamicMap8 {
  float code[256];     // ascending; signed: code[127] == 0, code[255] == 1.0, no -1.0
  float bounds[255];   // midpoints between neighbours, computed in fp32
};

// The maps as bitsandbytes' golden files hold them (the project's default).
const DynamicMap8& dynamic_map(bool is_signed);

// A map from 256 values (e.g. a checkpoint's `nested_quant_map`, or the map a given machine's
// bitsandbytes built): bitsandbytes makes its map at run time with torch.linspace, whose last bit
// depends on the CPU kernels LibTorch picks (FMA or not), so maps differ by one ulp in a few
// entries between machines, and the map that quantized a tensor is the one to dequantize it with.
// Throws std::invalid_argument unless the values are finite and ascending.
DynamicMap8 make_dynamic_map(const float* values);

QLC_HD float decode_8bit(const DynamicMap8& map, uint8_t q, float absmax) {
  return map.code[q] * absmax;
}

// Nearest code, a value on a midpoint taking the lower code (torch.bucketize over the midpoints,
// as bitsandbytes' PyTorch backend quantizes). A branch-free binary search over 255 bounds.
QLC_HD uint8_t encode_8bit_nearest(const DynamicMap8& map, float scaled) {
  int lo = 0;  // answer = number of bounds strictly below `scaled`
QLC_UNROLL
  for (int step = 128; step > 0; step >>= 1) {
    const int probe = lo + step - 1;
    if (probe < 255 && map.bounds[probe] < scaled) lo += step;
  }
  return static_cast<uint8_t>(lo);
}

}  // namespace qlc::kernels
