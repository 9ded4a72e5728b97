// Our bit-level pieces that imitate LibTorch, checked against the LibTorch we link (2.13 from the
// wheel, 1.13 from Debian): dtype conversions (c10::Half / c10::BFloat16) and the fp32 mean whose
// summation order decides bitsandbytes' double-quantization offset.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "qlc/kernels/double_quant.h"
#include "qlc/kernels/float_bits.h"

namespace qlc::kernels {
namespace {

std::vector<float> interesting_floats() {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65520.0f, 65519.0f, 1e-8f, -6e-8f,
                          3e-5f, 1e30f, -1e30f, std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::min(),
                          std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::max()};
  std::mt19937 rng(11);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    const float f = float_of(bits(rng));
    if (!std::isnan(f)) v.push_back(f);
  }
  return v;
}

TEST(LibTorchAgreement, Fp16ConversionEqualsC10Half) {
  for (float f : interesting_floats()) {
    ASSERT_EQ(to_fp16(f).bits, c10::Half(f).x) << f;
    const uint16_t h = to_fp16(f).bits;
    c10::Half ch;
    ch.x = h;
    ASSERT_EQ(bits_of(to_float(Fp16{h})), bits_of(static_cast<float>(ch))) << h;
  }
}

TEST(LibTorchAgreement, Bf16ConversionEqualsC10BFloat16) {
  for (float f : interesting_floats()) {
    ASSERT_EQ(to_bf16(f).bits, c10::BFloat16(f).x) << f;
  }
  EXPECT_EQ(to_bf16(std::nanf("")).bits, c10::BFloat16(std::nanf("")).x);
}

// LibTorch sums with Vectorized<float> of 8 lanes on AVX2 and 16 on AVX-512; whichever width this
// LibTorch uses, one width must reproduce every mean bit for bit (a different summation order would
// miss some of these sizes).
TEST(LibTorchAgreement, MeanFollowsLibTorchSummationOrder) {
  std::mt19937 rng(5);
  std::lognormal_distribution<float> dist(0.0f, 1.5f);
  std::vector<int64_t> sizes = {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 100, 127, 255, 256,
                                257, 511, 1000, 1023, 1025, 4096, 4099, 8191, 16384, 30000};
  at::set_num_threads(1);  // our order is LibTorch's single-thread order
  std::vector<std::vector<float>> inputs;
  std::vector<uint32_t> torch_bits;
  for (int64_t n : sizes) {
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = dist(rng);
    torch_bits.push_back(bits_of(at::from_blob(x.data(), {n}, at::kFloat).mean().item<float>()));
    inputs.push_back(std::move(x));
  }
  std::string misses;
  for (int lanes : {8, 16}) {
    int missed = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
      const auto n = static_cast<int64_t>(inputs[i].size());
      if (bits_of(torch_cpu_mean(inputs[i].data(), n, lanes)) != torch_bits[i]) ++missed;
    }
    if (missed == 0) return;  // this width reproduces every size
    misses += " lanes=" + std::to_string(lanes) + ": " + std::to_string(missed) + " sizes differ;";
  }
  FAIL() << "no lane width reproduces LibTorch's fp32 mean:" << misses;
}

}  // namespace
}  // namespace qlc::kernels
