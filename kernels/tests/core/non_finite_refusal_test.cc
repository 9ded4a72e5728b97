// quantize_4bit_fast_finite: the fast 4-bit quantizer that refuses NaN/Inf while it quantizes.
// It must say "finite" exactly when std::isfinite holds for every element (checked over every
// 16-bit pattern and the fp32 boundary patterns), wherever the bad value sits (first element,
// inside a later run of blocks, in the short last block, in a blocksize the kernels do not
// vectorize), and when it says so its codes must be the reference's bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "qlc/kernels/blockwise_4bit.h"
#include "qlc/kernels/blockwise_fast.h"

namespace qlc::kernels {
namespace {

std::vector<FastConfig> configs() {
  std::vector<FastConfig> out;
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512})
    if (isa <= detected_cpu_isa())
      for (int64_t chunks : {0, 1, 7}) out.push_back(FastConfig{isa, chunks});
  return out;
}

template <class T>
T from_bits(uint32_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

template <class T>
std::vector<T> normal(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<T> v(static_cast<size_t>(n));
  for (T& x : v) x = from_float<T>(d(rng));
  return v;
}

struct Quantized {
  bool finite = false;
  std::vector<uint8_t> packed;
  std::vector<float> absmax;
};

template <class T>
Quantized run(const std::vector<T>& x, int64_t bs, const FastConfig& c) {
  const int64_t n = static_cast<int64_t>(x.size());
  Quantized q;
  q.packed.assign(static_cast<size_t>(packed_bytes_4bit(n)), 0xA5);
  q.absmax.assign(static_cast<size_t>(num_blocks(n, bs)), -7.0f);
  q.finite = quantize_4bit_fast_finite(x.data(), n, bs, QuantType4::kNf4, q.packed.data(),
                                       q.absmax.data(), c);
  return q;
}

template <class T>
class NonFiniteRefusal : public ::testing::Test {};
using Types = ::testing::Types<float, Bf16, Fp16>;
TYPED_TEST_SUITE(NonFiniteRefusal, Types);

// Finite input: true, and the reference's codes (same bits as the unchecked fast path, which the
// fast-path tests compare with the reference everywhere).
TYPED_TEST(NonFiniteRefusal, FiniteInputQuantizesLikeTheReference) {
  for (int64_t n : {1, 63, 64, 8192 * 3 + 65, 100003}) {
    for (int64_t bs : {48, 64, 4096}) {
      std::vector<TypeParam> x = normal<TypeParam>(n, static_cast<uint32_t>(n + bs));
      std::vector<uint8_t> packed(static_cast<size_t>(packed_bytes_4bit(n)));
      std::vector<float> absmax(static_cast<size_t>(num_blocks(n, bs)));
      quantize_4bit_reference(x.data(), n, bs, QuantType4::kNf4, packed.data(), absmax.data());
      for (const FastConfig& c : configs()) {
        SCOPED_TRACE("n " + std::to_string(n) + " bs " + std::to_string(bs) + " isa " +
                     to_string(c.isa) + " chunks " + std::to_string(c.chunks));
        const Quantized q = run(x, bs, c);
        EXPECT_TRUE(q.finite);
        EXPECT_EQ(q.packed, packed);
        EXPECT_EQ(0, std::memcmp(q.absmax.data(), absmax.data(), absmax.size() * sizeof(float)));
      }
    }
  }
}

// One NaN, +Inf or -Inf anywhere is refused: the first element, the last element of a run of
// checked blocks and the first of the next (8192 elements per run), deep in a later thread's
// chunk, and the short last block.
TYPED_TEST(NonFiniteRefusal, OneBadValueAnywhereIsRefused) {
  const int64_t n = 8192 * 6 + 37;
  const std::vector<TypeParam> clean = normal<TypeParam>(n, 5);
  const float bad_values[] = {std::nanf(""), INFINITY, -INFINITY};
  for (int64_t at : {int64_t{0}, int64_t{8191}, int64_t{8192}, int64_t{8192 * 5 + 100}, n - 1}) {
    for (float bad : bad_values) {
      std::vector<TypeParam> x = clean;
      x[static_cast<size_t>(at)] = from_float<TypeParam>(bad);
      for (int64_t bs : {48, 64, 4096}) {
        for (const FastConfig& c : configs()) {
          SCOPED_TRACE("at " + std::to_string(at) + " value " + std::to_string(bad) + " bs " +
                       std::to_string(bs) + " isa " + to_string(c.isa) + " chunks " +
                       std::to_string(c.chunks));
          EXPECT_FALSE(run(x, bs, c).finite);
        }
      }
    }
  }
}

// The first run refused stops the work: with one chunk, a NaN in the first element leaves every
// code unwritten (runs are checked before they are quantized).
TYPED_TEST(NonFiniteRefusal, RefusalStopsBeforeWriting) {
  std::vector<TypeParam> x = normal<TypeParam>(8192 * 8, 9);
  x[0] = from_float<TypeParam>(std::nanf(""));
  for (const FastConfig& c : configs()) {
    if (c.chunks != 1) continue;
    const Quantized q = run(x, 64, FastConfig{c.isa, 1});
    EXPECT_FALSE(q.finite);
    EXPECT_EQ(q.packed, std::vector<uint8_t>(q.packed.size(), 0xA5)) << to_string(c.isa);
  }
}

// Every 16-bit pattern, alone among ordinary values: refused exactly when the value it encodes
// is not finite (std::isfinite of the exact fp32 widening is the oracle).
template <class T>
void every_pattern_is_classified_like_isfinite() {
  std::vector<T> x = normal<T>(64, 3);
  for (uint32_t bits = 0; bits <= 0xFFFF; ++bits) {
    x[17] = from_bits<T>(bits);
    const bool want = std::isfinite(to_float(x[17]));
    for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
      if (isa > detected_cpu_isa()) continue;
      ASSERT_EQ(run(x, 64, FastConfig{isa, 1}).finite, want)
          << "pattern 0x" << std::hex << bits << " isa " << to_string(isa);
    }
  }
}

TEST(NonFiniteRefusalPatterns, EveryBf16Pattern) { every_pattern_is_classified_like_isfinite<Bf16>(); }
TEST(NonFiniteRefusalPatterns, EveryFp16Pattern) { every_pattern_is_classified_like_isfinite<Fp16>(); }

TEST(NonFiniteRefusalPatterns, Fp32BoundaryPatterns) {
  std::vector<float> x = normal<float>(64, 4);
  for (uint32_t sign : {0u, 0x80000000u}) {
    for (uint32_t magnitude : {0u, 1u, 0x007FFFFFu, 0x00800000u, 0x7F7FFFFFu, 0x7F800000u,
                               0x7F800001u, 0x7FBFFFFFu, 0x7FC00000u, 0x7FFFFFFFu}) {
      x[40] = from_bits<float>(sign | magnitude);
      const bool want = std::isfinite(x[40]);
      for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
        if (isa > detected_cpu_isa()) continue;
        EXPECT_EQ(run(x, 64, FastConfig{isa, 1}).finite, want)
            << "bits 0x" << std::hex << (sign | magnitude) << " isa " << to_string(isa);
      }
    }
  }
}

}  // namespace
}  // namespace qlc::kernels
