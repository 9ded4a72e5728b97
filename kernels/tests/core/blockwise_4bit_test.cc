// 4-bit blockwise reference: edge cases and error bounds derived from the code books.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "qlc/kernels/blockwise_4bit.h"

namespace qlc::kernels {
namespace {

struct RoundTrip {
  std::vector<uint8_t> packed;
  std::vector<float> absmax;
  std::vector<float> out;
};

RoundTrip round_trip(const std::vector<float>& x, int64_t blocksize, QuantType4 type) {
  const int64_t n = static_cast<int64_t>(x.size());
  RoundTrip r{std::vector<uint8_t>(static_cast<size_t>(packed_bytes_4bit(n))),
              std::vector<float>(static_cast<size_t>(num_blocks(n, blocksize))),
              std::vector<float>(x.size())};
  quantize_4bit_reference(x.data(), n, blocksize, type, r.packed.data(), r.absmax.data());
  dequantize_4bit_reference(r.packed.data(), r.absmax.data(), n, blocksize, type, r.out.data());
  return r;
}

float largest_gap(QuantType4 type) {
  const Codebook4& cb = codebook4(type);
  float gap = 0.0f;
  for (int k = 0; k < 15; ++k) gap = std::max(gap, cb.code[cb.order[k + 1]] - cb.code[cb.order[k]]);
  return gap;
}

TEST(Blockwise4bit, SupportedBlocksizesArePowersOfTwoFrom32To4096) {
  for (int64_t b : {32, 64, 128, 256, 512, 1024, 2048, 4096}) EXPECT_TRUE(is_supported_blocksize(b));
  for (int64_t b : {0, 16, 48, 100, 8192, -64}) EXPECT_FALSE(is_supported_blocksize(b));
}

// Each value lands on the nearest code of x/absmax, so |x - deq| <= absmax * gap/2 where gap is
// the largest distance between neighbouring codes; fp32 adds at most a few ulps of absmax
// (scaling, product), bounded here by absmax * 2^-20.
TEST(Blockwise4bit, RoundTripErrorIsWithinHalfTheLargestCodeGap) {
  std::mt19937 rng(7);
  std::student_t_distribution<float> heavy(3.0f);
  for (QuantType4 type : {QuantType4::kNf4, QuantType4::kFp4}) {
    for (int64_t blocksize : {32, 64, 256, 4096}) {
      std::vector<float> x(10007);
      for (float& v : x) v = heavy(rng);
      const RoundTrip r = round_trip(x, blocksize, type);
      const float half_gap = largest_gap(type) / 2.0f;
      for (size_t i = 0; i < x.size(); ++i) {
        const float am = r.absmax[i / static_cast<size_t>(blocksize)];
        ASSERT_LE(std::fabs(r.out[i] - x[i]), am * (half_gap + std::ldexp(1.0f, -20)))
            << to_string(type) << " b" << blocksize << " i=" << i;
      }
    }
  }
}

TEST(Blockwise4bit, BlockMaximumIsExact) {
  // The largest |x| of a block scales to +-1, a code of both books, so it survives exactly.
  std::vector<float> x = {0.1f, -7.5f, 2.0f, 3.0f};
  for (QuantType4 type : {QuantType4::kNf4, QuantType4::kFp4}) {
    EXPECT_EQ(round_trip(x, 64, type).out[1], -7.5f) << to_string(type);
  }
}

TEST(Blockwise4bit, EmptyOneAndOddCounts) {
  EXPECT_TRUE(round_trip({}, 64, QuantType4::kNf4).packed.empty());
  const RoundTrip one = round_trip({-3.0f}, 64, QuantType4::kNf4);
  ASSERT_EQ(one.packed.size(), 1u);
  EXPECT_EQ(one.packed[0], 0x07u) << "-1.0 is NF4 code 0; the pad is the code of 0.0 (7)";
  EXPECT_EQ(one.out[0], -3.0f);
  const RoundTrip odd = round_trip({1.0f, 2.0f, 3.0f}, 64, QuantType4::kFp4);
  EXPECT_EQ(odd.packed.size(), 2u);
  EXPECT_EQ(odd.packed[1] & 0x0F, 0) << "FP4 pads with pattern 0 (+0.0)";
}

TEST(Blockwise4bit, AllZeroBlocksDecodeToZero) {
  std::vector<float> x(64 * 3 + 10, 0.0f);
  x[100] = 5.0f;  // only the second block is non-zero
  for (QuantType4 type : {QuantType4::kNf4, QuantType4::kFp4}) {
    const RoundTrip r = round_trip(x, 64, type);
    EXPECT_EQ(r.absmax[0], 0.0f);
    EXPECT_EQ(r.absmax[3], kMinAbsmax) << "a short block stores the clamped absmax";
    for (size_t i = 0; i < x.size(); ++i) {
      if (i / 64 != 1) {
        EXPECT_EQ(r.out[i], 0.0f) << i;
      }
    }
    EXPECT_EQ(r.out[100], 5.0f);
  }
}

TEST(Blockwise4bit, HugeAndTinyMagnitudesKeepTheirScale) {
  for (float scale : {1e30f, 1e-30f, 3e38f}) {
    std::vector<float> x = {scale, -scale / 2, scale / 4, 0.0f};
    const RoundTrip r = round_trip(x, 32, QuantType4::kNf4);
    EXPECT_EQ(r.absmax[0], scale);
    EXPECT_EQ(r.out[0], scale);
    for (float v : r.out) EXPECT_TRUE(std::isfinite(v)) << scale;
    EXPECT_LE(std::fabs(r.out[1] + scale / 2), scale * largest_gap(QuantType4::kNf4) / 2 * 1.0001f);
  }
}

TEST(Blockwise4bit, StorageCostMatchesTheQloraPaper) {
  // Per parameter: 4 bits of code + one fp32 absmax per 64 values = 4.5 bits; with double
  // quantization one byte per 64 values plus one fp32 per 256 blocks = 4 + 8/64 + 32/16384 bits.
  const int64_t n = int64_t{1} << 20;
  const double plain = (packed_bytes_4bit(n) + 4.0 * num_blocks(n, 64)) * 8.0 / n;
  EXPECT_DOUBLE_EQ(plain, 4.5);
  const int64_t blocks = num_blocks(n, 64);
  const double dq = (packed_bytes_4bit(n) + blocks + 4.0 * num_blocks(blocks, 256) + 4.0) * 8.0 / n;
  EXPECT_NEAR(dq, 4.127, 0.0005);
}

TEST(Blockwise4bit, Bf16AndFp16InputsEqualTheirFp32Values) {
  std::mt19937 rng(3);
  std::normal_distribution<float> dist;
  std::vector<Bf16> xb(999);
  std::vector<float> xf(999);
  for (size_t i = 0; i < xb.size(); ++i) {
    xb[i] = to_bf16(dist(rng));
    xf[i] = to_float(xb[i]);
  }
  std::vector<uint8_t> pb(500), pf(500);
  std::vector<float> ab(16), af(16);
  quantize_4bit_reference(xb.data(), 999, 64, QuantType4::kNf4, pb.data(), ab.data());
  quantize_4bit_reference(xf.data(), 999, 64, QuantType4::kNf4, pf.data(), af.data());
  EXPECT_EQ(pb, pf);
  EXPECT_EQ(ab, af);
  std::vector<Bf16> ob(999);
  std::vector<float> of(999);
  dequantize_4bit_reference(pb.data(), ab.data(), 999, 64, QuantType4::kNf4, ob.data());
  dequantize_4bit_reference(pb.data(), ab.data(), 999, 64, QuantType4::kNf4, of.data());
  for (size_t i = 0; i < ob.size(); ++i) ASSERT_EQ(ob[i].bits, to_bf16(of[i]).bits) << i;
}

}  // namespace
}  // namespace qlc::kernels
