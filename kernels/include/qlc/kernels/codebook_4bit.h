// The two 4-bit code books of bitsandbytes and the per-element arithmetic of 4-bit blockwise
// quantization, shared by the scalar reference, the fast CPU path and the CUDA kernels.
#pragma once

#include <cstdint>
#include <string>

#include "qlc/kernels/host_device.h"

namespace qlc::kernels {

enum class QuantType4 : uint8_t { kNf4, kFp4 };

std::string to_string(QuantType4 type);
// Accepts "nf4" / "fp4"; throws std::invalid_argument naming the bad value otherwise.
QuantType4 quant_type4_from_string(const std::string& name);

// Everything a 4-bit (de)quantizer needs, small enough to pass to a CUDA kernel by value.
struct Codebook4 {
  float code[16];    // dequantization value of each 4-bit pattern
  float bounds[15];  // midpoints between adjacent values in ascending order, computed in fp32
  uint8_t order[16]; // order[k] = 4-bit pattern of the k-th smallest value (stable for FP4's two zeros)
};

// The code book of `type` (built once; bitsandbytes' values bit for bit).
const Codebook4& codebook4(QuantType4 type);

// Nearest code by midpoint comparison; a value exactly on a midpoint takes the lower code
// (torch.bucketize semantics: the count of midpoints strictly below the value).
QLC_HD uint8_t encode_4bit(const Codebook4& cb, float scaled) {
  int rank = 0;
QLC_UNROLL
  for (int k = 0; k < 15; ++k) rank += scaled > cb.bounds[k] ? 1 : 0;
  return cb.order[rank];
}

QLC_HD float decode_4bit(const Codebook4& cb, uint8_t nibble, float absmax) {
  return cb.code[nibble & 0xF] * absmax;
}

// Element 2j goes to the high nibble of byte j, element 2j+1 to the low nibble.
QLC_HD uint8_t pack_nibbles(uint8_t first, uint8_t second) {
  return static_cast<uint8_t>((first << 4) | (second & 0xF));
}

}  // namespace qlc::kernels
