#include "qlc/kernels/codebook_4bit.h"

#include <algorithm>
#include <array>
#include <numeric>
#include <stdexcept>

namespace qlc::kernels {
namespace {

// NF4: quantiles of N(0, 1) normalised to [-1, 1] with an exact zero (QLoRA paper, appendix E);
// the fp32 values bitsandbytes' get_4bit_type("nf4") returns.
constexpr std::array<float, 16> kNf4Values = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

// FP4 (E2M1 without inf/NaN): bit 3 sign, bits 2-1 exponent, bit 0 mantissa. Magnitudes in bit
// order, as bitsandbytes lists them before dividing by the largest (12).
constexpr std::array<float, 8> kFp4Magnitudes = {0.0f, 0.0625f, 8.0f, 12.0f, 4.0f, 6.0f, 2.0f, 3.0f};

Codebook4 build(QuantType4 type) {
  Codebook4 cb{};
  std::array<float, 16> sort_values{};  // the values bitsandbytes sorts (+0.0 for both FP4 zeros)
  for (int i = 0; i < 16; ++i) {
    if (type == QuantType4::kNf4) {
      cb.code[i] = kNf4Values[i];
      sort_values[i] = kNf4Values[i];
    } else {
      const float mag = kFp4Magnitudes[i & 7] / 12.0f;
      // Pattern 8 (sign bit on zero) is +0.0 in the table bitsandbytes quantizes with and in its
      // PyTorch and AVX-512 dequantizers; its scalar and AVX2 CPU kernels give -0.0 (equal values).
      cb.code[i] = (i & 8) && mag != 0.0f ? -mag : mag;
      sort_values[i] = cb.code[i];
    }
  }
  std::array<uint8_t, 16> order{};
  std::iota(order.begin(), order.end(), uint8_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](uint8_t a, uint8_t b) { return sort_values[a] < sort_values[b]; });
  for (int k = 0; k < 16; ++k) cb.order[k] = order[k];
  for (int k = 0; k < 15; ++k) {
    cb.bounds[k] = (sort_values[order[k]] + sort_values[order[k + 1]]) / 2.0f;
  }
  return cb;
}

}  // namespace

const Codebook4& codebook4(QuantType4 type) {
  static const Codebook4 nf4 = build(QuantType4::kNf4);
  static const Codebook4 fp4 = build(QuantType4::kFp4);
  return type == QuantType4::kNf4 ? nf4 : fp4;
}

std::string to_string(QuantType4 type) { return type == QuantType4::kNf4 ? "nf4" : "fp4"; }

QuantType4 quant_type4_from_string(const std::string& name) {
  if (name == "nf4") return QuantType4::kNf4;
  if (name == "fp4") return QuantType4::kFp4;
  throw std::invalid_argument("unknown 4-bit quant type '" + name + "' (expected nf4 or fp4)");
}

}  // namespace qlc::kernels
