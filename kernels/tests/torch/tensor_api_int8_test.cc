// The tensor API's LLM.int8 path against the raw-buffer reference (int8_rowwise_test.cc derives
// it by hand; int8_peer_test.cc compares it with bitsandbytes): weight and activation quantization,
// both dequantization orders, and the forward for every dtype, shape and edge case.
#include <gtest/gtest.h>

#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>

#include <cmath>
#include <limits>
#include <vector>

#include "qlc/kernels/int8_rowwise.h"
#include "qlc/kernels/tensor_api.h"
#include "tensor_test_support.h"

namespace qlc::kernels {
namespace {

using testing::bytes_of;
using testing::cpu_has_fp16_matmul;
using testing::expect_error;
using testing::floats_of;
using testing::kNoFp16MatmulMessage;
using testing::normal_values;
using testing::tensor_of;
using testing::values_of;

// The reference's CB / SCB for fp16(w).
struct RefWeight {
  std::vector<int8_t> cb;
  std::vector<float> scb;
};
RefWeight reference_weight(const at::Tensor& w) {
  const std::vector<Fp16> w16 = values_of<Fp16>(w.to(at::kHalf));
  RefWeight r{std::vector<int8_t>(w16.size()), std::vector<float>(static_cast<size_t>(w.size(0)))};
  quantize_int8_rowwise_reference(w16.data(), w.size(0), w.size(1), 0.0f, r.cb.data(), r.scb.data(),
                                  static_cast<int64_t*>(nullptr));
  return r;
}

template <class T>
std::vector<float> reference_forward(const at::Tensor& x2d, const Int8Weight& w, const at::Tensor& bias,
                                     float threshold) {
  const std::vector<T> x = values_of<T>(x2d);
  const std::vector<T> b = bias.defined() ? values_of<T>(bias.to(x2d.scalar_type())) : std::vector<T>{};
  const std::vector<int8_t> cb = values_of<int8_t>(w.cb);
  const std::vector<float> scb = values_of<float>(w.scb);
  std::vector<T> y(static_cast<size_t>(x2d.size(0) * w.cb.size(0)));
  int8_linear_forward_reference(x.data(), x2d.size(0), x2d.size(1), cb.data(), scb.data(), w.cb.size(0),
                                b.empty() ? nullptr : b.data(), threshold, y.data());
  std::vector<float> out;
  for (const T& v : y) out.push_back(to_float(v));
  return out;
}

std::vector<float> reference_forward(const at::Tensor& x2d, const Int8Weight& w, const at::Tensor& bias,
                                     float threshold) {
  switch (x2d.scalar_type()) {
    case at::kHalf: return reference_forward<Fp16>(x2d, w, bias, threshold);
    case at::kBFloat16: return reference_forward<Bf16>(x2d, w, bias, threshold);
    default: return reference_forward<float>(x2d, w, bias, threshold);
  }
}

double unit_roundoff(at::ScalarType dtype) {
  return dtype == at::kFloat ? std::ldexp(1.0, -24) : dtype == at::kHalf ? std::ldexp(1.0, -11) : std::ldexp(1.0, -9);
}

TEST(TensorApiInt8, WeightIsQuantizedFromItsFp16Values) {
  const Int8Weight hand = quantize_int8_rowwise(tensor_of<float>({1, -2, 3, 0, 0, 0}, {2, 3}, at::kFloat));
  EXPECT_EQ(values_of<int8_t>(hand.cb), (std::vector<int8_t>{42, -85, 127, 0, 0, 0}));
  EXPECT_EQ(values_of<float>(hand.scb), (std::vector<float>{3.0f, 0.0f}));

  const at::Tensor w = tensor_of(normal_values(24 * 70, 0.02f, 1), {24, 70}, at::kFloat);
  for (at::ScalarType dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
    const at::Tensor wd = w.to(dtype);
    const Int8Weight q = quantize_int8_rowwise(wd);
    const RefWeight r = reference_weight(wd);
    EXPECT_EQ(values_of<int8_t>(q.cb), r.cb);
    EXPECT_EQ(values_of<float>(q.scb), r.scb);
    // Transposed storage of the same matrix gives the same codes.
    const Int8Weight t = quantize_int8_rowwise(wd.t().contiguous().t());
    EXPECT_EQ(bytes_of(t.cb), bytes_of(q.cb));
  }
}

TEST(TensorApiInt8, DequantizeBothOrders) {
  const at::Tensor w = tensor_of(normal_values(9 * 33, 1.0f, 2), {9, 33}, at::kFloat);
  const Int8Weight q = quantize_int8_rowwise(w);
  const std::vector<int8_t> cb = values_of<int8_t>(q.cb);
  const std::vector<float> scb = values_of<float>(q.scb);
  for (Int8DequantOrder order : {Int8DequantOrder::kVectorwise, Int8DequantOrder::kScaleFirst}) {
    std::vector<float> expected(cb.size());
    dequantize_int8_rowwise_reference(cb.data(), scb.data(), 9, 33, order, expected.data());
    EXPECT_EQ(values_of<float>(dequantize_int8_rowwise(q, at::kFloat, order)), expected);
    // 16-bit outputs are the fp32 values rounded once (LibTorch's cast as the independent oracle).
    for (at::ScalarType dtype : {at::kHalf, at::kBFloat16})
      EXPECT_EQ(bytes_of(dequantize_int8_rowwise(q, dtype, order)),
                bytes_of(tensor_of(expected, {9, 33}, at::kFloat).to(dtype)));
  }
}

TEST(TensorApiInt8, ActivationQuantizationWithOutliers) {
  // bitsandbytes' observed result for [[0,0,0],[1,-2,3],[0.5,7,-1]] (see int8_rowwise_test.cc),
  // given as a [1, 3, 3] fp32 tensor: flattened to rows, cast to fp16.
  const Int8Activation a =
      quantize_int8_activation(tensor_of<float>({0, 0, 0, 1, -2, 3, 0.5f, 7, -1}, {1, 3, 3}, at::kFloat), 6.0);
  EXPECT_EQ(values_of<int8_t>(a.ca), (std::vector<int8_t>{0, 0, 0, 42, 0, 127, 64, 0, -127}));
  EXPECT_EQ(values_of<float>(a.sca), (std::vector<float>{0.0f, 3.0f, 1.0f}));
  EXPECT_EQ(values_of<int64_t>(a.outlier_cols), (std::vector<int64_t>{1}));
  const Int8Activation none = quantize_int8_activation(at::zeros({4, 0}, at::kFloat), 6.0);
  EXPECT_EQ(none.ca.sizes().vec(), (std::vector<int64_t>{4, 0}));
  EXPECT_EQ(none.outlier_cols.numel(), 0);
}

// Without outlier columns the tensor path runs the reference's arithmetic in the same order
// (exact int GEMM, fp32 rescale, bias, one rounding): equal bits. K = 2100 crosses two 1040-column
// chunks of the fp32 GEMM, where a single fp32 GEMM could round (127 * 127 * 2100 > 2^24).
TEST(TensorApiInt8, ForwardWithoutOutliersEqualsReferenceBitForBit) {
  for (int64_t k : {int64_t{1}, int64_t{64}, int64_t{2100}}) {
    const at::Tensor w = tensor_of(normal_values(13 * k, 0.05f, 3), {13, k}, at::kFloat);
    const Int8Weight q = quantize_int8_rowwise(w);
    for (at::ScalarType dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
      const at::Tensor x = tensor_of(normal_values(7 * k, 1.0f, 4), {7, k}, at::kFloat).to(dtype);
      const at::Tensor bias = tensor_of(normal_values(13, 1.0f, 5), {13}, at::kFloat).to(dtype);
      ASSERT_EQ(quantize_int8_activation(x, 6.0).outlier_cols.numel(), 0);
      for (const at::Tensor& b : {bias, at::Tensor()}) {
        const at::Tensor y = int8_linear_forward(x, q, b, 6.0);
        EXPECT_EQ(y.scalar_type(), dtype);
        EXPECT_EQ(floats_of(y), reference_forward(x, q, b, 6.0f)) << "k " << k << " dtype " << dtype;
      }
    }
  }
  // Saturated codes: every product is 127 * 127, the sum 32,258,000 is exact only in int32.
  const at::Tensor ones = at::ones({1, 2000}, at::kFloat);
  const Int8Weight q = quantize_int8_rowwise(ones);
  EXPECT_EQ(floats_of(int8_linear_forward(ones, q, at::Tensor(), 0.0)),
            (std::vector<float>{32258000.0f * (1.0f * 1.0f) * kBnbCpuMmDequantScale}));
}

// With outliers LibTorch's addmm adds the outlier columns; the reference sums them in fp32 in
// column order. Both round the result to T once after an fp32 sum of the same exact-in-fp32
// terms (fp16 / bf16 products fit in fp32): |a - b| <= u_T (|a| + |b| + S) + 2 n 2^-24 (S + |base|)
// with S = sum |terms| and n outlier columns (u_T S covers an addmm that rounds the product to T).
TEST(TensorApiInt8, ForwardWithOutliersWithinRoundingOfReference) {
  const int64_t k = 96, n = 11;
  const at::Tensor w = tensor_of(normal_values(n * k, 0.05f, 6), {n, k}, at::kFloat);
  const Int8Weight q = quantize_int8_rowwise(w);
  std::vector<float> xv = normal_values(5 * k, 1.0f, 7);
  xv[0 * k + 3] = 40.0f;
  xv[2 * k + 50] = -9.0f;
  xv[4 * k + 95] = 6.0f;  // exactly the threshold: an outlier
  for (at::ScalarType dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
    const at::Tensor x = tensor_of(xv, {5, k}, at::kFloat).to(dtype);
    ASSERT_EQ(quantize_int8_activation(x, 6.0).outlier_cols.numel(), 3);
    if (dtype == at::kHalf && !cpu_has_fp16_matmul()) {  // the outlier product is LibTorch's addmm
      expect_error<c10::Error>([&] { int8_linear_forward(x, q, at::Tensor(), 6.0); }, {kNoFp16MatmulMessage});
      continue;
    }
    const std::vector<float> got = floats_of(int8_linear_forward(x, q, at::Tensor(), 6.0));
    const std::vector<float> ref = reference_forward(x, q, at::Tensor(), 6.0f);
    const std::vector<float> xs = floats_of(x);
    const std::vector<float> wd = floats_of(dequantize_int8_rowwise(q, at::kFloat));
    const double u = unit_roundoff(dtype);
    for (int64_t i = 0; i < 5; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0.0;
        for (int64_t c : {int64_t{3}, int64_t{50}, int64_t{95}}) s += std::abs(xs[i * k + c] * wd[j * k + c]);
        const double a = got[i * n + j], b = ref[i * n + j];
        const double bound = u * (std::abs(a) + std::abs(b) + s) + 6 * std::ldexp(1.0, -24) * (s + std::abs(b) + s);
        ASSERT_LE(std::abs(a - b), bound) << "dtype " << dtype << " row " << i << " col " << j;
      }
  }
}

TEST(TensorApiInt8, ForwardShapes) {
  const Int8Weight q = quantize_int8_rowwise(tensor_of(normal_values(6 * 8, 1.0f, 8), {6, 8}, at::kFloat));
  const at::Tensor x3 = tensor_of(normal_values(2 * 3 * 8, 1.0f, 9), {2, 3, 8}, at::kFloat);
  const at::Tensor y3 = int8_linear_forward(x3, q);
  EXPECT_EQ(y3.sizes().vec(), (std::vector<int64_t>{2, 3, 6}));
  EXPECT_EQ(floats_of(y3), floats_of(int8_linear_forward(x3.reshape({6, 8}), q)));
  // A 1-D input is one row; a transposed (non-contiguous) input equals its contiguous copy.
  EXPECT_EQ(int8_linear_forward(x3[0][1], q).sizes().vec(), (std::vector<int64_t>{6}));
  const at::Tensor xt = tensor_of(normal_values(8 * 4, 1.0f, 10), {8, 4}, at::kFloat).t();
  EXPECT_EQ(floats_of(int8_linear_forward(xt, q)), floats_of(int8_linear_forward(xt.contiguous(), q)));
  // No rows: an empty result; no input features: the bias alone.
  EXPECT_EQ(int8_linear_forward(at::zeros({0, 8}, at::kFloat), q).sizes().vec(), (std::vector<int64_t>{0, 6}));
  const Int8Weight q0 = quantize_int8_rowwise(at::zeros({6, 0}, at::kFloat));
  const at::Tensor bias = tensor_of(normal_values(6, 1.0f, 11), {6}, at::kFloat);
  EXPECT_EQ(floats_of(int8_linear_forward(at::zeros({2, 0}, at::kFloat), q0, bias)[1]), floats_of(bias));
}

TEST(TensorApiInt8, NanAndZeroRowsStayInTheirRow) {
  const Int8Weight q = quantize_int8_rowwise(tensor_of(normal_values(5 * 16, 1.0f, 12), {5, 16}, at::kFloat));
  std::vector<float> xv = normal_values(3 * 16, 1.0f, 13);
  for (int c = 0; c < 16; ++c) xv[2 * 16 + c] = 0.0f;
  xv[1 * 16 + 4] = std::numeric_limits<float>::quiet_NaN();
  const at::Tensor bias = tensor_of(normal_values(5, 1.0f, 14), {5}, at::kFloat);
  const std::vector<float> y = floats_of(int8_linear_forward(tensor_of(xv, {3, 16}, at::kFloat), q, bias));
  const std::vector<float> row0 =
      floats_of(int8_linear_forward(tensor_of(std::vector<float>(xv.begin(), xv.begin() + 16), {1, 16}, at::kFloat), q, bias));
  for (int j = 0; j < 5; ++j) {
    EXPECT_EQ(y[j], row0[j]);                  // rows are independent
    EXPECT_TRUE(std::isnan(y[5 + j]));         // NaN row: SCA is NaN, as in bitsandbytes
    EXPECT_EQ(y[10 + j], floats_of(bias)[j]);  // zero row: 0 * (0 * SCB) + bias
  }
}

TEST(TensorApiInt8, BiasIsCastToTheInputDtype) {
  const Int8Weight q = quantize_int8_rowwise(tensor_of(normal_values(4 * 8, 1.0f, 15), {4, 8}, at::kFloat));
  const at::Tensor x = tensor_of(normal_values(2 * 8, 1.0f, 16), {2, 8}, at::kFloat).to(at::kBFloat16);
  const at::Tensor bias = tensor_of(normal_values(4, 1.0f, 17), {4}, at::kFloat);
  EXPECT_EQ(bytes_of(int8_linear_forward(x, q, bias)), bytes_of(int8_linear_forward(x, q, bias.to(at::kBFloat16))));
}

}  // namespace
}  // namespace qlc::kernels
