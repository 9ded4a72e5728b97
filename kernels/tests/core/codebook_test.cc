// The 4-bit code books and their encoder, checked against the definitions in QLORA_FACTS.md
// (FP4 bit layout, NF4 ordering) rather than against the tables themselves.
#include <gtest/gtest.h>

#include <cmath>

#include "qlc/kernels/block_scale.h"
#include "qlc/kernels/codebook_4bit.h"

namespace qlc::kernels {
namespace {

TEST(Codebook4, Nf4IsSortedFromMinusOneToOneWithZeroAtSeven) {
  const Codebook4& cb = codebook4(QuantType4::kNf4);
  EXPECT_EQ(cb.code[0], -1.0f);
  EXPECT_EQ(cb.code[7], 0.0f);
  EXPECT_EQ(cb.code[15], 1.0f);
  for (int i = 1; i < 16; ++i) EXPECT_LT(cb.code[i - 1], cb.code[i]);
  for (int k = 0; k < 16; ++k) EXPECT_EQ(cb.order[k], k);
}

TEST(Codebook4, Fp4FollowsItsBitLayout) {
  // bit 3 sign; bits 2-1 exponent e, bit 0 mantissa m. bitsandbytes' exponent field runs
  // downwards: e = 1, 2, 3 scale by 8, 4, 2; e = 0 is the subnormal 0 / 0.0625. Magnitudes in bit
  // order are therefore 0, 0.0625, 8, 12, 4, 6, 2, 3, all over 12 (QLORA_FACTS.md).
  const Codebook4& cb = codebook4(QuantType4::kFp4);
  for (int p = 0; p < 16; ++p) {
    const int e = (p >> 1) & 3, m = p & 1;
    const double mag = e == 0 ? m * 0.0625 : std::ldexp(1.0 + 0.5 * m, 4 - e);
    const double expected = ((p & 8) && mag != 0 ? -mag : mag) / 12.0;
    EXPECT_EQ(cb.code[p], static_cast<float>(expected)) << "pattern " << p;
  }
}

TEST(Codebook4, EncodingACodeValueGivesItsPattern) {
  for (QuantType4 type : {QuantType4::kNf4, QuantType4::kFp4}) {
    const Codebook4& cb = codebook4(type);
    for (int p = 0; p < 16; ++p) {
      if (type == QuantType4::kFp4 && p == 8) continue;  // -0 and +0 share one value; +0 wins
      EXPECT_EQ(encode_4bit(cb, cb.code[p]), p) << to_string(type) << " pattern " << p;
    }
  }
}

TEST(Codebook4, MidpointsGoToTheLowerCodeAndJustAboveToTheUpper) {
  for (QuantType4 type : {QuantType4::kNf4, QuantType4::kFp4}) {
    const Codebook4& cb = codebook4(type);
    for (int k = 0; k < 15; ++k) {
      const float lo = cb.code[cb.order[k]], hi = cb.code[cb.order[k + 1]];
      if (lo == hi) continue;
      const float mid = (lo + hi) / 2.0f;
      EXPECT_EQ(encode_4bit(cb, mid), cb.order[k]) << to_string(type) << " midpoint " << k;
      EXPECT_EQ(encode_4bit(cb, std::nextafter(mid, 2.0f)), cb.order[k + 1]);
    }
  }
}

TEST(Codebook4, ScaleToUnitClampsAndTreatsZeroBlocks) {
  EXPECT_EQ(scale_to_unit(0.0f, 0.0f, true), 0.0f);       // 0 * (1 / 1e-38), not 0/0
  EXPECT_EQ(scale_to_unit(3.0f, 3.0f, true), 1.0f);
  EXPECT_EQ(scale_to_unit(-3.0f, 3.0f, false), -1.0f);
  EXPECT_EQ(scale_to_unit(1e30f, 1e-30f, true), 1.0f);    // clamped
  EXPECT_EQ(stored_absmax(0.0f, true), 0.0f);
  EXPECT_EQ(stored_absmax(0.0f, false), kMinAbsmax);
}

TEST(Codebook4, NamesRoundTripAndBadNamesAreRejected) {
  EXPECT_EQ(quant_type4_from_string("nf4"), QuantType4::kNf4);
  EXPECT_EQ(quant_type4_from_string(to_string(QuantType4::kFp4)), QuantType4::kFp4);
  EXPECT_THROW(quant_type4_from_string("int4"), std::invalid_argument);
}

}  // namespace
}  // namespace qlc::kernels
