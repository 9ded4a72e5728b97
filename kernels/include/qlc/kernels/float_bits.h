// Bit-level float conversions shared by every path: fp32 <-> bf16 / fp16 with round-to-nearest-even,
// the same results as c10::BFloat16 and c10::Half, so our outputs equal LibTorch's `.to(dtype)`.
#pragma once

#include <cstdint>
#include <cstring>

#include "qlc/kernels/host_device.h"

namespace qlc::kernels {

// 16-bit storage types: plain structs so that this header needs neither LibTorch nor CUDA.
struct Bf16 {
  uint16_t bits;
};
struct Fp16 {
  uint16_t bits;
};

QLC_HD uint32_t bits_of(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

QLC_HD float float_of(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

QLC_HD float to_float(float f) { return f; }
QLC_HD float to_float(Bf16 h) { return float_of(static_cast<uint32_t>(h.bits) << 16); }

QLC_HD float to_float(Fp16 h) {
  const uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
  const uint32_t exp = (h.bits >> 10) & 0x1Fu;
  uint32_t mant = h.bits & 0x3FFu;
  if (exp == 0x1F) return float_of(sign | 0x7F800000u | (mant << 13));  // inf / NaN
  if (exp != 0) return float_of(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return float_of(sign);  // signed zero
  // Subnormal half: value = mant * 2^-24, exact in fp32.
  const float mag = static_cast<float>(mant) * 5.9604644775390625e-08f;
  return float_of(sign | bits_of(mag));
}

// Round-to-nearest-even, NaN -> canonical quiet NaN 0x7FC0 (c10::BFloat16's rule).
QLC_HD Bf16 to_bf16(float f) {
  const uint32_t u = bits_of(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return Bf16{0x7FC0};
  const uint32_t rounded = u + 0x7FFFu + ((u >> 16) & 1u);
  return Bf16{static_cast<uint16_t>(rounded >> 16)};
}

// Round-to-nearest-even with subnormals, overflow to inf, NaN kept quiet (IEEE binary16).
QLC_HD Fp16 to_fp16(float f) {
  const uint32_t u = bits_of(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return Fp16{static_cast<uint16_t>(sign | 0x7E00u)};
  if (abs >= 0x477FF000u) return Fp16{static_cast<uint16_t>(sign | 0x7C00u)};  // rounds to >= 65520
  if (abs < 0x38800000u) {
    // Result is subnormal or zero: value / 2^-24, rounded to nearest even integer.
    if (abs < 0x33000000u) return Fp16{sign};  // below half of the smallest subnormal
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126u - exp;  // 113 - exp + 13
    uint32_t q = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return Fp16{static_cast<uint16_t>(sign | q)};
  }
  uint32_t h = ((abs >> 13) - (112u << 10));
  const uint32_t rem = abs & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return Fp16{static_cast<uint16_t>(sign | h)};
}

template <class Out>
QLC_HD Out from_float(float f);
template <>
QLC_HD float from_float<float>(float f) {
  return f;
}
template <>
QLC_HD Bf16 from_float<Bf16>(float f) {
  return to_bf16(f);
}
template <>
QLC_HD Fp16 from_float<Fp16>(float f) {
  return to_fp16(f);
}

}  // namespace qlc::kernels
