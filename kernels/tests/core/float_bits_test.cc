// fp32 <-> bf16 / fp16 conversions: exhaustive round trips and rounding at exact halfway points
// (constructed from adjacent representable values, independent of the code under test).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "qlc/kernels/float_bits.h"

namespace qlc::kernels {
namespace {

bool is_nan_fp16(uint16_t h) { return (h & 0x7C00u) == 0x7C00u && (h & 0x3FFu) != 0; }
bool is_nan_bf16(uint16_t h) { return (h & 0x7F80u) == 0x7F80u && (h & 0x7Fu) != 0; }

TEST(FloatBits, EveryFp16SurvivesARoundTripThroughFloat) {
  for (uint32_t h = 0; h <= 0xFFFFu; ++h) {
    const auto bits = static_cast<uint16_t>(h);
    if (is_nan_fp16(bits)) {
      EXPECT_TRUE(std::isnan(to_float(Fp16{bits}))) << h;
      continue;
    }
    ASSERT_EQ(to_fp16(to_float(Fp16{bits})).bits, bits) << "fp16 pattern " << h;
  }
}

TEST(FloatBits, EveryBf16SurvivesARoundTripThroughFloat) {
  for (uint32_t h = 0; h <= 0xFFFFu; ++h) {
    const auto bits = static_cast<uint16_t>(h);
    if (is_nan_bf16(bits)) {
      EXPECT_EQ(to_bf16(to_float(Bf16{bits})).bits, 0x7FC0u) << "NaN becomes the canonical quiet NaN";
      continue;
    }
    ASSERT_EQ(to_bf16(to_float(Bf16{bits})).bits, bits) << "bf16 pattern " << h;
  }
}

// Halfway between two adjacent fp16 values a and b (both finite, same sign): the exact midpoint is
// representable in fp32 and must round to the one with an even mantissa; just above it, to b.
TEST(FloatBits, Fp16RoundsHalfwayToEven) {
  for (uint32_t h = 0; h < 0x7BFFu; ++h) {  // positive finite, excluding the largest
    const float a = to_float(Fp16{static_cast<uint16_t>(h)});
    const float b = to_float(Fp16{static_cast<uint16_t>(h + 1)});
    const float mid = a + (b - a) / 2.0f;  // exact: fp32 has 13 more mantissa bits than fp16
    ASSERT_EQ(to_fp16(mid).bits, (h % 2 == 0) ? h : h + 1) << "midpoint after fp16 pattern " << h;
    ASSERT_EQ(to_fp16(std::nextafter(mid, b)).bits, h + 1);
    ASSERT_EQ(to_fp16(std::nextafter(mid, a)).bits, h);
    ASSERT_EQ(to_fp16(-mid).bits, ((h % 2 == 0) ? h : h + 1) | 0x8000u);
  }
}

TEST(FloatBits, Fp16OverflowsToInfinityFromTheHalfwayPointAboveMax) {
  // 65504 is the largest fp16; the next step would be 65536, so 65520 is the halfway point
  // and rounds to even, i.e. to infinity.
  EXPECT_EQ(to_fp16(65504.0f).bits, 0x7BFFu);
  EXPECT_EQ(to_fp16(std::nextafter(65520.0f, 0.0f)).bits, 0x7BFFu);
  EXPECT_EQ(to_fp16(65520.0f).bits, 0x7C00u);
  EXPECT_EQ(to_fp16(-1e30f).bits, 0xFC00u);
  EXPECT_EQ(to_fp16(std::numeric_limits<float>::infinity()).bits, 0x7C00u);
  // Below half the smallest subnormal (2^-25) everything flushes to a signed zero.
  EXPECT_EQ(to_fp16(std::ldexp(1.0f, -26)).bits, 0x0000u);
  EXPECT_EQ(to_fp16(-std::ldexp(1.0f, -26)).bits, 0x8000u);
  EXPECT_EQ(to_fp16(std::ldexp(1.0f, -25)).bits, 0x0000u);                          // tie to even 0
  EXPECT_EQ(to_fp16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)).bits, 0x0001u);
  EXPECT_TRUE(is_nan_fp16(to_fp16(std::numeric_limits<float>::quiet_NaN()).bits));
}

TEST(FloatBits, Bf16RoundsHalfwayToEven) {
  for (uint32_t h = 0; h < 0x7F7Fu; h += 7) {  // positive finite, a spread of patterns
    const float a = to_float(Bf16{static_cast<uint16_t>(h)});
    const float b = to_float(Bf16{static_cast<uint16_t>(h + 1)});
    const float mid = float_of(bits_of(a) + 0x8000u);  // exactly halfway: the dropped half is 0x8000
    ASSERT_GT(mid, a);
    ASSERT_LT(mid, b);
    ASSERT_EQ(to_bf16(mid).bits, (h % 2 == 0) ? h : h + 1) << h;
    ASSERT_EQ(to_bf16(std::nextafter(mid, b)).bits, h + 1);
  }
}

}  // namespace
}  // namespace qlc::kernels
