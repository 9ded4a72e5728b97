// The 8-bit dynamic maps against their definition (QLORA_FACTS.md, bitsandbytes'
// create_dynamic_map) evaluated in double precision: every table entry must be that value
// after at most a few fp32 roundings (linspace, midpoint, decade scaling).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "qlc/kernels/blockwise_8bit.h"
#include "qlc/kernels/dynamic_map.h"

namespace qlc::kernels {
namespace {

std::vector<double> formula(bool is_signed) {
  std::vector<double> v;
  for (int i = 0; i < 7; ++i) {
    const int k = is_signed ? (1 << i) : (1 << (i + 1));
    for (int j = 0; j < k; ++j) {
      const double a = 0.1 + 0.9 * j / k, b = 0.1 + 0.9 * (j + 1) / k;
      const double value = std::pow(10.0, i - 6) * (a + b) / 2.0;
      v.push_back(value);
      if (is_signed) v.push_back(-value);
    }
  }
  v.push_back(0.0);
  v.push_back(1.0);
  std::sort(v.begin(), v.end());
  return v;
}

TEST(DynamicMap, EntriesAreTheFormulaWithinFp32Rounding) {
  for (bool is_signed : {true, false}) {
    const std::vector<double> expected = formula(is_signed);
    ASSERT_EQ(expected.size(), 256u);
    const DynamicMap8& map = dynamic_map(is_signed);
    for (int i = 0; i < 256; ++i) {
      // Tolerance: linspace (1 rounding), the midpoint (1), the decade scale (2) in fp32:
      // at most 4 half-ulps, i.e. 2^-22 relative.
      EXPECT_NEAR(map.code[i], expected[i], std::fabs(expected[i]) * std::ldexp(1.0, -22))
          << (is_signed ? "signed" : "unsigned") << " entry " << i;
    }
  }
}

TEST(DynamicMap, SignedHasZeroAt127AndOneAt255ButNoMinusOne) {
  const DynamicMap8& map = dynamic_map(true);
  EXPECT_EQ(map.code[127], 0.0f);
  EXPECT_EQ(map.code[255], 1.0f);
  EXPECT_GT(map.code[0], -1.0f);
  EXPECT_EQ(dynamic_map(false).code[0], 0.0f);
  for (int i = 1; i < 256; ++i) EXPECT_LE(map.code[i - 1], map.code[i]);
}

TEST(DynamicMap, NearestEncodingPicksTheNearestCodeTiesLow) {
  const DynamicMap8& map = dynamic_map(true);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(encode_8bit_nearest(map, map.code[i]), i);
  for (int i = 0; i < 255; ++i) {
    EXPECT_EQ(encode_8bit_nearest(map, map.bounds[i]), i);
    EXPECT_EQ(encode_8bit_nearest(map, std::nextafter(map.bounds[i], 2.0f)), i + 1);
  }
  EXPECT_EQ(encode_8bit_nearest(map, -5.0f), 0);
  EXPECT_EQ(encode_8bit_nearest(map, 5.0f), 255);
}

TEST(DynamicMap, LibraryGridSnapHasAtMost65536DistinctPoints) {
  // The grid is -1 + 2k/65535: both ends are on it and a value maps to a grid point within
  // half a step (1/65535) of itself after clamping.
  EXPECT_EQ(snap_to_bnb_grid(-1.0f), -1.0f);
  EXPECT_EQ(snap_to_bnb_grid(1.0f), 1.0f);
  EXPECT_EQ(snap_to_bnb_grid(7.0f), 1.0f);
  for (float v = -1.0f; v <= 1.0f; v += 0.000731f) {
    EXPECT_LE(std::fabs(snap_to_bnb_grid(v) - v), 1.0f / 65535.0f + 1e-6f) << v;
  }
}

TEST(DynamicMap, MakeRejectsUnsortedOrNonFiniteValues) {
  std::vector<float> values(dynamic_map(true).code, dynamic_map(true).code + 256);
  EXPECT_NO_THROW(make_dynamic_map(values.data()));
  std::swap(values[10], values[11]);
  EXPECT_THROW(make_dynamic_map(values.data()), std::invalid_argument);
  std::swap(values[10], values[11]);
  values[3] = std::nanf("");
  EXPECT_THROW(make_dynamic_map(values.data()), std::invalid_argument);
}

}  // namespace
}  // namespace qlc::kernels
