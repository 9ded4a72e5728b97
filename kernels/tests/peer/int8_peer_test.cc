// LLM.int8 against bitsandbytes' CPU path (int8_peer.py: Linear8bitLt with frozen int8 weights in
// eval mode): weight codes and scales, both dequantization orders, activation codes with outlier
// columns, and the forward, bit for bit where we link the peer's LibTorch (within the bound of two
// summation orders of one product elsewhere); the scalar reference within its derived rounding bound.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "qlc/kernels/int8_rowwise.h"
#include "qlc/kernels/tensor_api.h"
#include "torch/tensor_test_support.h"

namespace qlc::kernels {
namespace {

using testing::bytes_of;
using testing::cpu_has_fp16_matmul;
using testing::expect_error;
using testing::floats_of;
using testing::kNoFp16MatmulMessage;
using testing::linked_torch_version;
using testing::tensor_of;
using testing::values_of;

std::filesystem::path peer_dir() {
  const char* dir = std::getenv("QLC_PEER_DIR");
  if (dir == nullptr)
    throw std::runtime_error("QLC_PEER_DIR is not set: run through ctest, whose peer_vectors fixture writes the files");
  return dir;
}

template <class T>
std::vector<float> reference_forward(const at::Tensor& x, const Int8Weight& w, const at::Tensor& bias) {
  const std::vector<T> xv = values_of<T>(x), bv = values_of<T>(bias);
  const std::vector<int8_t> cb = values_of<int8_t>(w.cb);
  const std::vector<float> scb = values_of<float>(w.scb);
  std::vector<T> y(static_cast<size_t>(x.size(0) * w.cb.size(0)));
  int8_linear_forward_reference(xv.data(), x.size(0), x.size(1), cb.data(), scb.data(), w.cb.size(0), bv.data(),
                                kInt8OutlierThreshold, y.data());
  std::vector<float> out;
  for (const T& v : y) out.push_back(to_float(v));
  return out;
}

std::vector<float> reference_forward(const at::Tensor& x, const Int8Weight& w, const at::Tensor& bias) {
  if (x.scalar_type() == at::kHalf) return reference_forward<Fp16>(x, w, bias);
  if (x.scalar_type() == at::kBFloat16) return reference_forward<Bf16>(x, w, bias);
  return reference_forward<float>(x, w, bias);
}

TEST(Int8Peer, MatchesBitsandbytesCpu) {
  const StFile file = read_safetensors((peer_dir() / "int8_peer.safetensors").string());
  const nlohmann::json cases = nlohmann::json::parse(file.metadata.at("cases"));
  ASSERT_EQ(cases.size(), 18u);
  int cases_with_outliers = 0;
  for (const nlohmann::json& entry : cases) {
    const std::string c = entry.get<std::string>();
    SCOPED_TRACE(c);
    const at::Tensor w = tensor_of(file.at(c + ".w"));
    const at::Tensor x = tensor_of(file.at(c + ".x"));
    const at::Tensor bias = tensor_of(file.at(c + ".bias"));
    const at::ScalarType dtype = x.scalar_type();

    const Int8Weight q = quantize_int8_rowwise(w);
    EXPECT_EQ(bytes_of(q.cb), file.at(c + ".cb").data);
    EXPECT_EQ(bytes_of(q.scb), file.at(c + ".scb").data);
    EXPECT_EQ(bytes_of(dequantize_int8_rowwise(q, at::kFloat, Int8DequantOrder::kVectorwise)), file.at(c + ".w_dq").data);
    EXPECT_EQ(bytes_of(dequantize_int8_rowwise(q, dtype, Int8DequantOrder::kScaleFirst)),
              file.at(c + ".w_dq_scale_first").data);

    const Int8Activation a = quantize_int8_activation(x, kInt8OutlierThreshold);
    EXPECT_EQ(bytes_of(a.ca), file.at(c + ".ca").data);
    EXPECT_EQ(bytes_of(a.sca), file.at(c + ".sca").data);
    EXPECT_EQ(values_of<int64_t>(a.outlier_cols), values_of<int64_t>(tensor_of(file.at(c + ".cols"))));
    const int64_t outliers = a.outlier_cols.numel();
    cases_with_outliers += outliers > 0;

    const std::vector<float> bnb = floats_of(tensor_of(file.at(c + ".y")));
    const double u = dtype == at::kFloat ? std::ldexp(1.0, -24) : dtype == at::kHalf ? std::ldexp(1.0, -11) : std::ldexp(1.0, -9);
    const std::vector<float> xs = floats_of(x);
    const std::vector<float> wd = floats_of(dequantize_int8_rowwise(q, at::kFloat));
    const std::vector<float> bs = floats_of(bias);
    const std::vector<int64_t> cols = values_of<int64_t>(a.outlier_cols);
    const int64_t k = x.size(1), n = q.cb.size(0);
    // sum over `columns` (all of them when null) of |x w|, for output (i, j)
    auto abs_terms = [&](int64_t i, int64_t j, const std::vector<int64_t>* columns) {
      double s = 0.0;
      if (columns == nullptr) {
        for (int64_t col = 0; col < k; ++col) s += std::abs(double(xs[i * k + col]) * wd[j * k + col]);
      } else {
        for (int64_t col : *columns) s += std::abs(double(xs[i * k + col]) * wd[j * k + col]);
      }
      return s;
    };

    // The tensor path runs bitsandbytes' own LibTorch ops in its order: the same bits with the same
    // LibTorch. Another LibTorch (Debian's 1.13) sums the product in another order: both are fp32
    // sums of the same k exact terms plus the bias, each within (k + 1) 2^-24 (S + |bias|) of the
    // exact value (Higham, Thm 3.1, first order), then rounded to T once:
    // |a - b| <= u_T (|a| + |b|) + 2 (k + 1) 2^-24 (S + |bias|), S = sum of |x w| over all k columns.
    if (dtype == at::kHalf && outliers > 0 && !cpu_has_fp16_matmul()) {  // the outliers' addmm
      expect_error<c10::Error>([&] { int8_linear_forward(x, q, bias, kInt8OutlierThreshold); },
                               {kNoFp16MatmulMessage});
    } else {
      const at::Tensor y = int8_linear_forward(x, q, bias, kInt8OutlierThreshold);
      if (file.metadata.at("torch").rfind(linked_torch_version(), 0) == 0) {
        EXPECT_EQ(bytes_of(y), file.at(c + ".y").data);
      } else {
        const std::vector<float> ys = floats_of(y);
        for (int64_t i = 0; i < x.size(0); ++i)
          for (int64_t j = 0; j < n; ++j) {
            const double g = ys[i * n + j], b = bnb[i * n + j];
            const double bound = u * (std::abs(g) + std::abs(b)) +
                                 2.0 * double(k + 1) * std::ldexp(1.0, -24) * (abs_terms(i, j, nullptr) + std::abs(bs[j]));
            ASSERT_LE(std::abs(g - b), bound) << "LibTorch " << linked_torch_version() << ", row " << i << " col " << j;
          }
      }
    }

    // The reference: equal without outlier columns; with them its fp32 column-order sum and
    // LibTorch's addmm may round differently: |a - b| <= u_T (|a| + |b| + S) + 2 n 2^-24 (2S + |b|)
    // (S = sum over the n outlier columns of |x w|; see tensor_api_int8_test.cc).
    const std::vector<float> ref = reference_forward(x, q, bias);
    if (outliers == 0) {
      EXPECT_EQ(ref, bnb);
      continue;
    }
    for (int64_t i = 0; i < x.size(0); ++i)
      for (int64_t j = 0; j < n; ++j) {
        const double s = abs_terms(i, j, &cols);
        const double r = ref[i * n + j], b = bnb[i * n + j];
        const double bound = u * (std::abs(r) + std::abs(b) + s) + 2.0 * outliers * std::ldexp(1.0, -24) * (2 * s + std::abs(b));
        ASSERT_LE(std::abs(r - b), bound) << "row " << i << " col " << j;
      }
  }
  EXPECT_EQ(cases_with_outliers, 9);  // every "outliers" case really held some back
}

}  // namespace
}  // namespace qlc::kernels
