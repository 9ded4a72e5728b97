// LLM.int8 row-wise quantization: hand-derived codes, bitsandbytes' observed outputs on small
// matrices, outlier handling, zero and NaN rows, and error bounds derived from 127 levels.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include "qlc/kernels/int8_rowwise.h"

namespace qlc::kernels {
namespace {

std::vector<Fp16> half(const std::vector<float>& v) {
  std::vector<Fp16> out;
  for (float f : v) out.push_back(to_fp16(f));
  return out;
}

struct Quantized {
  std::vector<int8_t> q;
  std::vector<float> stats;
  std::vector<int64_t> cols;
};

template <class In>
Quantized quantize(const std::vector<In>& x, int64_t rows, int64_t cols, float threshold) {
  Quantized r{std::vector<int8_t>(x.size()), std::vector<float>(static_cast<size_t>(rows)),
              std::vector<int64_t>(static_cast<size_t>(cols))};
  const int64_t n = quantize_int8_rowwise_reference(x.data(), rows, cols, threshold, r.q.data(),
                                                    r.stats.data(), r.cols.data());
  r.cols.resize(static_cast<size_t>(n));
  return r;
}

TEST(Int8Rowwise, RoundsToNearestOf127Levels) {
  // absmax 3: scale fl(fl(1/3) * 127) = 42.333336; 1 -> 42.33 -> 42, -2 -> -84.67 -> -85, 3 -> 127.
  const Quantized r = quantize(half({1.0f, -2.0f, 3.0f}), 1, 3, 0.0f);
  EXPECT_EQ(r.q, (std::vector<int8_t>{42, -85, 127}));
  EXPECT_EQ(r.stats, (std::vector<float>{3.0f}));
  EXPECT_TRUE(r.cols.empty());
}

TEST(Int8Rowwise, ScaleIsReciprocalTimes127AsTorchEvaluatesIt) {
  // Found by int8_peer_test: bitsandbytes' `127.0 / row_stats` runs as reciprocal(row_stats) * 127.
  // For absmax 0.1590576171875 that is 798.45276 (division: 798.45282), and fp16 -0.0795288086
  // scales to -63.499996, which bitsandbytes rounds to -63 (a division gives the tie -63.5 -> -64).
  EXPECT_EQ(int8_row_scale(0.1590576171875f), 798.4527587890625f);
  EXPECT_NE(int8_row_scale(0.1590576171875f), 127.0f / 0.1590576171875f);
  const Quantized r = quantize(half({-0.0795378461f, -0.1590576171875f}), 1, 2, 0.0f);
  EXPECT_EQ(r.q, (std::vector<int8_t>{-63, -127}));
}

TEST(Int8Rowwise, TiesGoToEven) {
  // absmax 127 makes the scale exactly 1, so x.5 values are exact ties: torch.round is half-even.
  const Quantized r = quantize(half({127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -2.5f, -3.5f}), 1, 7, 0.0f);
  EXPECT_EQ(r.q, (std::vector<int8_t>{127, 0, 2, 2, 0, -2, -4}));
}

TEST(Int8Rowwise, ZeroRowGivesZeroCodesAndZeroScale) {
  // bitsandbytes computes 0 * (127 / 0) = NaN and casts it to int8 0 (observed on its CPU path).
  const Quantized r = quantize(half({0.0f, 0.0f, 0.0f, 1.0f, -2.0f, 3.0f}), 2, 3, 0.0f);
  EXPECT_EQ(r.q, (std::vector<int8_t>{0, 0, 0, 42, -85, 127}));
  EXPECT_EQ(r.stats, (std::vector<float>{0.0f, 3.0f}));
  std::vector<float> out(6);
  dequantize_int8_rowwise_reference(r.q.data(), r.stats.data(), 2, 3, Int8DequantOrder::kVectorwise,
                                    out.data());
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[2], 0.0f);
}

TEST(Int8Rowwise, NanRowPropagatesToScaleAndZeroesCodes) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Quantized r = quantize(std::vector<float>{1.0f, nan, 2.0f, 1.0f, 2.0f, 4.0f}, 2, 3, 0.0f);
  EXPECT_TRUE(std::isnan(r.stats[0]));  // torch.max propagates NaN into SCB
  EXPECT_EQ(r.stats[1], 4.0f);
  EXPECT_EQ((std::vector<int8_t>(r.q.begin(), r.q.begin() + 3)), (std::vector<int8_t>{0, 0, 0}));
}

TEST(Int8Rowwise, OutlierColumnsMatchBitsandbytes) {
  // bitsandbytes 0.50.2, int8_vectorwise_quant(fp16 [[0,0,0],[1,-2,3],[0.5,7,-1]], threshold=6):
  // CA [[0,0,0],[42,0,127],[64,0,-127]], SCA [0,3,1], outlier_cols [1]. Row 2 by hand: 7 is held
  // back, absmax{0.5, -1} = 1, 0.5 * 127 = 63.5 -> 64 (even), -1 -> -127.
  const Quantized r = quantize(half({0, 0, 0, 1, -2, 3, 0.5f, 7, -1}), 3, 3, kInt8OutlierThreshold);
  EXPECT_EQ(r.q, (std::vector<int8_t>{0, 0, 0, 42, 0, 127, 64, 0, -127}));
  EXPECT_EQ(r.stats, (std::vector<float>{0.0f, 3.0f, 1.0f}));
  EXPECT_EQ(r.cols, (std::vector<int64_t>{1}));
}

TEST(Int8Rowwise, NonOutlierInOutlierColumnStillSetsTheRowScale) {
  // Column 1 holds the outlier 7 (row 1); row 0's 5 in that column is no outlier, so bitsandbytes
  // keeps it in row 0's absmax (5) although the whole column is zeroed in the codes.
  const Quantized r = quantize(half({1, 5, 1, 7}), 2, 2, 6.0f);
  EXPECT_EQ(r.stats, (std::vector<float>{5.0f, 1.0f}));
  EXPECT_EQ(r.q, (std::vector<int8_t>{25, 0, 127, 0}));  // 127 / 5 = 25.4 -> 25
  EXPECT_EQ(r.cols, (std::vector<int64_t>{1}));
}

TEST(Int8Rowwise, ThresholdIsInclusiveAndOnlyPositiveThresholdsHoldBack) {
  const Quantized at = quantize(half({6.0f, -6.0f, 5.99609375f}), 1, 3, 6.0f);  // 5.996: fp16 below 6
  EXPECT_EQ(at.cols, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(at.stats[0], 5.99609375f);
  const Quantized off = quantize(half({60.0f, 1.0f}), 1, 2, 0.0f);
  EXPECT_TRUE(off.cols.empty());
  EXPECT_EQ(off.stats[0], 60.0f);
}

TEST(Int8Rowwise, AllOutlierRowQuantizesToZero) {
  // bitsandbytes on [[8, 7, -7]] with threshold 6: CA [[0,0,0]], SCA [0], outlier_cols [0,1,2].
  const Quantized r = quantize(half({8, 7, -7}), 1, 3, 6.0f);
  EXPECT_EQ(r.q, (std::vector<int8_t>{0, 0, 0}));
  EXPECT_EQ(r.stats, (std::vector<float>{0.0f}));
  EXPECT_EQ(r.cols, (std::vector<int64_t>{0, 1, 2}));
}

TEST(Int8Rowwise, RoundTripErrorWithinHalfALevel) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t rows = 33, cols = 97;
  for (float magnitude : {1e-3f, 1.0f, 1e3f, 3e4f}) {
    std::vector<float> x(static_cast<size_t>(rows * cols));
    for (float& v : x) v = normal(rng) * magnitude;
    const Quantized r = quantize(x, rows, cols, 0.0f);
    for (Int8DequantOrder order : {Int8DequantOrder::kVectorwise, Int8DequantOrder::kScaleFirst}) {
      std::vector<float> back(x.size());
      dequantize_int8_rowwise_reference(r.q.data(), r.stats.data(), rows, cols, order, back.data());
      for (int64_t i = 0; i < rows; ++i) {
        const float a = r.stats[i];
        // |x * s - q| <= 0.5 + 127 * 3 * 2^-24 (s = fl(fl(1/a) * 127) and the product: three
        // roundings of 2^-24 relative, |x * s| <= 127 (1 + 3 * 2^-24)); divided by s:
        // (0.5 + 2.3e-5) a / 127. The dequantization's three fp32 roundings add 3 * 2^-24 * a.
        const double bound = (0.5 + 2.3e-5) * a / 127.0 + 3.0 * std::ldexp(double(a), -24);
        for (int64_t j = 0; j < cols; ++j) {
          const size_t k = static_cast<size_t>(i * cols + j);
          ASSERT_LE(std::abs(double(back[k]) - double(x[k])), bound)
              << "magnitude " << magnitude << " row " << i << " col " << j;
        }
      }
    }
  }
}

TEST(Int8Rowwise, TheTwoDequantOrdersDifferInTheLastBitOnly) {
  // kVectorwise rounds q * s first, kScaleFirst rounds s / 127 first: they may differ by one ulp.
  int differing = 0;
  for (int q = -127; q <= 127; ++q)
    for (float s : {0.1f, 0.3f, 1.7f, 3.14159f, 1e-3f, 65504.0f}) {
      const float a = dequantize_int8_value(static_cast<int8_t>(q), s, Int8DequantOrder::kVectorwise);
      const float b = dequantize_int8_value(static_cast<int8_t>(q), s, Int8DequantOrder::kScaleFirst);
      // Each is within 1.5 ulp of the exact q * s / 127 (two roundings plus fl(1/127)).
      ASSERT_LE(std::abs(double(a) - double(b)), 3.0 * std::ldexp(std::abs(double(a)), -24) + 1e-45);
      differing += a != b;
    }
  EXPECT_GT(differing, 0) << "expected at least one pair to round differently";
}

TEST(Int8Gemm, AccumulatesExactlyInInt32) {
  // [[1, 2, 3], [-127, 127, 0]] x [[4, 5, 6], [127, 127, 127]]^T.
  const std::vector<int8_t> a = {1, 2, 3, -127, 127, 0};
  const std::vector<int8_t> b = {4, 5, 6, 127, 127, 127};
  std::vector<int32_t> out(4);
  int8_gemm_reference(a.data(), b.data(), 2, 2, 3, out.data());
  EXPECT_EQ(out, (std::vector<int32_t>{32, 762, -127 * 4 + 127 * 5, 0}));
  // k = 2000: 127 * 127 * 2000 = 32,258,000 > 2^24; int32 keeps it exact.
  const std::vector<int8_t> ones(2000, 127);
  int32_t big = 0;
  int8_gemm_reference(ones.data(), ones.data(), 1, 1, 2000, &big);
  EXPECT_EQ(big, 32258000);
}

TEST(Int8LinearForward, RescaleUsesBitsandbytesCpuConstant) {
  // x = [[2, 2]] and W = 127 * I: CA = [127, 127], SCA = 2, CB = 127 * I, SCB = [127, 127], so
  // acc = 16129 and y = fl(fl(16129 * 254) * 6.200124e-05) = 254.0046, not 254: the CPU constant
  // is 1.8e-5 above 1/127^2.
  const std::vector<float> x = {2.0f, 2.0f};
  const std::vector<int8_t> cb = {127, 0, 0, 127};
  const std::vector<float> scb = {127.0f, 127.0f};
  std::vector<float> y(2);
  int8_linear_forward_reference(x.data(), 1, 2, cb.data(), scb.data(), 2, static_cast<const float*>(nullptr),
                                0.0f, y.data());
  const float expected = 16129.0f * 254.0f * 6.200124e-05f;
  EXPECT_EQ(y[0], expected);
  EXPECT_EQ(y[1], expected);
  EXPECT_NEAR(double(y[0]) / 254.0 - 1.0, 6.200124e-05 * 16129.0 - 1.0, 1e-6);
}

TEST(Int8LinearForward, OutlierColumnIsComputedInInputPrecision) {
  // x = [[1, 100]], W = [[1, 1]] (CB [127, 127], SCB 1). Column 1 is an outlier: CA = [127, 0],
  // SCA = 1, acc = 16129 -> fl(16129 * 1 * 6.200124e-05) = 1.000018; plus 100 * dequant(127, 1)
  // = 100 * fl(127 * fl(1/127)) = 100 in fp32.
  const std::vector<float> x = {1.0f, 100.0f};
  const std::vector<int8_t> cb = {127, 127};
  const std::vector<float> scb = {1.0f};
  float y = 0.0f;
  int8_linear_forward_reference(x.data(), 1, 2, cb.data(), scb.data(), 1, static_cast<const float*>(nullptr),
                                6.0f, &y);
  const float base = 16129.0f * 1.0f * 6.200124e-05f;
  const float w = (127.0f * 1.0f) * kInt8DequantScale;
  EXPECT_EQ(y, base + 100.0f * w);
  // Without the threshold the 100 is quantized with the row: CA = [1, 127], SCA = 100.
  int8_linear_forward_reference(x.data(), 1, 2, cb.data(), scb.data(), 1, static_cast<const float*>(nullptr),
                                0.0f, &y);
  EXPECT_EQ(y, 16256.0f * (100.0f * 1.0f) * 6.200124e-05f);
}

// Unit roundoff of each output type (half an ulp, relative).
template <class T>
double unit_roundoff() {
  if (std::is_same<T, float>::value) return std::ldexp(1.0, -24);
  if (std::is_same<T, Bf16>::value) return std::ldexp(1.0, -9);
  return std::ldexp(1.0, -11);
}

// y_ij = bias_j + sum_t x_it w_jt against a double-precision oracle, with the bound derived term by
// term. For a quantized column t: the activation is off by dx = sca_i / 254 (half a level, +1e-4
// for the fp32 scale roundings) plus |x| u16 from the fp16 cast (u16 = 2^-11, none when T is
// fp16), the weight by dw = scb_j / 254 (+1e-4); so |x^w^ - x w| <= dx (|w| + dw) + |x| dw. An
// outlier column keeps x exactly and only rounds the dequantized weight to T: |x| (dw + (|w| + dw)
// u_T). The GEMM is exact (k = 64); the rescale adds the CPU constant's 1.8e-5 (bounded by 2e-5)
// of S = sum (|x| + dx)(|w| + dw); rounding to T twice (base, then base + outliers) and the fp32
// bias add cost at most (2 u_T + 2^-24)(S + |bias|).
template <class T>
void check_forward_bound(float threshold, float spike) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t rows = 9, k = 64, n = 17;
  std::vector<float> xf(static_cast<size_t>(rows * k)), wf(static_cast<size_t>(n * k)), bf(n);
  for (float& v : xf) v = normal(rng);
  for (float& v : wf) v = normal(rng) * 0.05f;
  for (float& v : bf) v = normal(rng);
  xf[3 * k + 5] = spike;  // column 5 becomes an outlier column when spike >= threshold > 0
  std::vector<T> x, bias;
  for (float v : xf) x.push_back(from_float<T>(v));
  for (float v : bf) bias.push_back(from_float<T>(v));
  std::vector<Fp16> w16;
  for (float v : wf) w16.push_back(to_fp16(v));
  std::vector<int8_t> cb(wf.size());
  std::vector<float> scb(static_cast<size_t>(n));
  quantize_int8_rowwise_reference(w16.data(), n, k, 0.0f, cb.data(), scb.data(), static_cast<int64_t*>(nullptr));
  std::vector<T> y(static_cast<size_t>(rows * n));
  int8_linear_forward_reference(x.data(), rows, k, cb.data(), scb.data(), n, bias.data(), threshold, y.data());

  const double u_t = unit_roundoff<T>();
  const double u16 = std::is_same<T, Fp16>::value ? 0.0 : std::ldexp(1.0, -11);
  const bool col5_held_back = is_int8_outlier(to_float(to_fp16(to_float(x[3 * k + 5]))), threshold);
  for (int64_t i = 0; i < rows; ++i) {
    float sca = 0.0f;  // from the fp16 values, outliers left out, as the kernel does
    for (int64_t t = 0; t < k; ++t) {
      const float v16 = to_float(to_fp16(to_float(x[i * k + t])));
      if (!is_int8_outlier(v16, threshold)) sca = std::max(sca, std::abs(v16));
    }
    for (int64_t j = 0; j < n; ++j) {
      const double dw = scb[j] / 254.0 * (1.0 + 1e-4);
      double exact = to_float(bias[j]), err = 0.0, s = 0.0;
      for (int64_t t = 0; t < k; ++t) {
        const double xv = to_float(x[i * k + t]), wv = to_float(w16[j * k + t]);
        const double ax = std::abs(xv), aw = std::abs(wv);
        exact += xv * wv;
        if (col5_held_back && t == 5) {
          err += ax * (dw + (aw + dw) * u_t);
          s += ax * (aw + dw);
        } else {
          const double dx = sca / 254.0 * (1.0 + 1e-4) + ax * u16;
          err += dx * (aw + dw) + ax * dw;
          s += (ax + dx) * (aw + dw);
        }
      }
      const double bound = err + 2e-5 * s + (2.0 * u_t + std::ldexp(1.0, -24)) * (s + std::abs(to_float(bias[j])));
      ASSERT_LE(std::abs(double(to_float(y[i * n + j])) - exact), bound) << "row " << i << " col " << j;
    }
  }
}

TEST(Int8LinearForward, WithinQuantizationBoundFp32) { check_forward_bound<float>(6.0f, 0.5f); }
TEST(Int8LinearForward, WithinQuantizationBoundFp16) { check_forward_bound<Fp16>(6.0f, 0.5f); }
TEST(Int8LinearForward, WithinQuantizationBoundBf16) { check_forward_bound<Bf16>(6.0f, 0.5f); }
TEST(Int8LinearForward, OutlierKeepsTheBoundTightFp32) { check_forward_bound<float>(6.0f, 250.0f); }
TEST(Int8LinearForward, OutlierKeepsTheBoundTightBf16) { check_forward_bound<Bf16>(6.0f, 250.0f); }

TEST(Int8LinearForward, WithoutThresholdAnOutlierCostsTheWholeRow) {
  // The same spike quantized with its row inflates SCA 250x: the bound above (with dx = sca/254 for
  // every column) still holds, but the error is far larger than with the outlier held back.
  std::vector<float> x(64, 0.01f), w(64, 0.5f);
  x[5] = 250.0f;
  std::vector<Fp16> w16 = half(w);
  std::vector<int8_t> cb(64);
  float scb = 0.0f;
  quantize_int8_rowwise_reference(w16.data(), 1, 64, 0.0f, cb.data(), &scb, static_cast<int64_t*>(nullptr));
  float with = 0.0f, without = 0.0f;
  int8_linear_forward_reference(x.data(), 1, 64, cb.data(), &scb, 1, static_cast<const float*>(nullptr), 6.0f, &with);
  int8_linear_forward_reference(x.data(), 1, 64, cb.data(), &scb, 1, static_cast<const float*>(nullptr), 0.0f, &without);
  const double exact = 250.0 * 0.5 + 63 * 0.01 * 0.5;
  // Held back: only the 63 small values lose precision, relative 1/254 of 0.01 each.
  EXPECT_LT(std::abs(with - exact), 0.01);
  // Quantized with the row: 0.01 * 127 / 250 = 0.005 rounds to 0, so the 63 small terms vanish.
  EXPECT_GT(std::abs(without - exact), 0.3);
}

}  // namespace
}  // namespace qlc::kernels
