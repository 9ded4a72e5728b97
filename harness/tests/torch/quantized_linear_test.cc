// The frozen base layers: bitsandbytes' forward/backward arithmetic and casts, and what they keep
// for backward; their dequantization into shared buffers (same bits as allocating, one buffer per
// dtype grown to the largest weight, nothing of it kept by the graph or aliased by a result).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "training/dequant_buffers.h"
#include "training/quantized_linear.h"

namespace qlc::harness {
namespace {

using kernels::QuantType4;

at::Tensor randn(std::vector<int64_t> shape, uint64_t seed, double scale = 1.0) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat)) * scale;
}

int64_t nbytes(const at::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

constexpr int64_t kOut = 96, kIn = 128;  // in_features a multiple of 64: whole 4-bit blocks per row

// |computed - exact| <= gamma_K * sum_k |x_k * w_k| for any summation order of K fp32 products
// (Higham, Accuracy and Stability, 3.1), gamma_K = K u / (1 - K u), u = 2^-24.
double gamma_fp32(int64_t k) {
  const double ku = static_cast<double>(k) * std::ldexp(1.0, -24);
  return ku / (1.0 - ku);
}

TEST(Linear4bit, ForwardIsDequantizeToComputeDtypeThenLinear) {
  const at::Tensor w = randn({kOut, kIn}, 1, 0.02);
  for (QuantType4 type : {QuantType4::kNf4, QuantType4::kFp4}) {
    for (bool dq : {false, true}) {
      for (at::ScalarType compute : {at::kFloat, at::kBFloat16}) {
        for (at::ScalarType input : {at::kFloat, at::kBFloat16}) {
          const Linear4bit layer(w, type, dq, compute);
          const at::Tensor x = randn({2, 5, kIn}, 2).to(input);
          const at::Tensor y = layer.forward(x);
          // Linear4bit: x.to(compute); gemm_4bit: dequantize to A's dtype, F.linear; cast back.
          const at::Tensor expected =
              at::linear(x.to(compute), kernels::dequantize_4bit(layer.state(), compute)).to(input);
          EXPECT_EQ(y.scalar_type(), input);
          EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 5, kOut}));
          EXPECT_TRUE(at::equal(y, expected)) << "dq " << dq << " compute " << compute;
        }
      }
    }
  }
}

TEST(Linear4bit, Fp32ForwardWithinSummationBoundOfExactProduct) {
  const at::Tensor w = randn({kOut, kIn}, 3, 0.02);
  const Linear4bit layer(w, QuantType4::kNf4, true, at::kFloat);
  const at::Tensor x = randn({7, kIn}, 4);
  const at::Tensor y = layer.forward(x).to(at::kDouble);
  const at::Tensor wd = kernels::dequantize_4bit(layer.state(), at::kFloat).to(at::kDouble);
  const at::Tensor exact = at::linear(x.to(at::kDouble), wd);
  const at::Tensor bound = at::linear(x.to(at::kDouble).abs(), wd.abs()) * gamma_fp32(kIn);
  EXPECT_TRUE((y - exact).abs().le(bound).all().item<bool>())
      << "max error " << (y - exact).abs().max().item<double>();
}

TEST(Linear4bit, BackwardIsGradTimesDequantizedWeightInStateDtype) {
  for (at::ScalarType weight_dtype : {at::kFloat, at::kBFloat16}) {
    // A bf16-loaded weight dequantizes in bf16 for backward, then is cast (bitsandbytes' order).
    const at::Tensor w = randn({kOut, kIn}, 5, 0.02).to(weight_dtype);
    const auto state = std::make_shared<const kernels::QuantState4>(
        kernels::quantize_4bit(w, QuantType4::kNf4, 64, false));
    at::Tensor x = randn({3, 4, kIn}, 6).set_requires_grad(true);
    const at::Tensor g = randn({3, 4, kOut}, 7);
    matmul_4bit(x, state).backward(g);
    const at::Tensor expected = at::matmul(g, kernels::dequantize_4bit(*state).to(at::kFloat));
    EXPECT_TRUE(at::equal(x.grad(), expected));

    // Against autograd through a dense layer holding the same dequantized weight: both are fp32
    // sums of kOut products, each within gamma_kOut * sum|g w| of the exact value.
    at::Tensor x2 = x.detach().clone().set_requires_grad(true);
    const at::Tensor dense = kernels::dequantize_4bit(*state).to(at::kFloat);
    at::linear(x2, dense).backward(g);
    const at::Tensor bound = at::matmul(g.abs(), dense.abs()) * (2.0 * gamma_fp32(kOut));
    EXPECT_TRUE((x.grad() - x2.grad()).abs().le(bound).all().item<bool>());
  }
}

TEST(Linear4bit, SavesOnlyTheQuantizedStateForBackward) {
  for (bool dq : {false, true}) {
    const at::Tensor w = randn({kOut, kIn}, 8, 0.02);
    const Linear4bit layer(w, QuantType4::kNf4, dq, at::kFloat);
    const auto state = std::make_shared<const kernels::QuantState4>(layer.state());
    const at::Tensor x = randn({2, kIn}, 9).set_requires_grad(true);
    const at::Tensor y = matmul_4bit(x, state);
    const std::vector<at::Tensor> saved = matmul_4bit_saved_tensors(y);
    int64_t bytes = 0;
    for (const at::Tensor& t : saved) {
      bytes += nbytes(t);
      EXPECT_FALSE(t.is_floating_point() && t.numel() == kOut * kIn)
          << "a dequantized weight is kept for backward";
      // The very buffers of the state, not copies.
      const bool shared = t.data_ptr() == state->packed.data_ptr() ||
                          t.data_ptr() == state->absmax.data_ptr() ||
                          t.data_ptr() == state->code.data_ptr() ||
                          (state->nested && (t.data_ptr() == state->nested->absmax2.data_ptr() ||
                                             t.data_ptr() == state->nested->code.data_ptr()));
      EXPECT_TRUE(shared);
    }
    EXPECT_EQ(bytes, layer.storage_bytes());
  }
}

TEST(Linear4bit, StorageBytesAreWhatTheStateHolds) {
  const int64_t n = kOut * kIn, blocks = n / 64;
  const Linear4bit plain(randn({kOut, kIn}, 10), QuantType4::kNf4, false, at::kFloat);
  // packed nibbles + fp32 absmax per block + the 16-entry fp32 code book
  EXPECT_EQ(plain.storage_bytes(), n / 2 + 4 * blocks + 16 * 4);
  const Linear4bit nested(randn({kOut, kIn}, 10), QuantType4::kNf4, true, at::kFloat);
  // + one 8-bit absmax per block, one fp32 per 256 of those, the 256-entry nested code book
  EXPECT_EQ(nested.storage_bytes(), n / 2 + blocks + 4 * ((blocks + 255) / 256) + 16 * 4 + 256 * 4);
  EXPECT_EQ(plain.numel(), n);
  EXPECT_EQ(plain.in_features(), kIn);
  EXPECT_EQ(plain.out_features(), kOut);
}

TEST(Linear8bitLt, DequantizeMatmulPathIsBitsandbytesCpuTrainingPath) {
  EXPECT_EQ(int8_path_for_device(at::Device(at::kCPU)), Int8Path::kDequantizeMatmul);
  const at::Tensor w = randn({kOut, kIn}, 11, 0.02);
  for (at::ScalarType input : {at::kFloat, at::kBFloat16}) {
    const Linear8bitLt layer(w, Int8Path::kDequantizeMatmul);
    at::Tensor x = randn({2, 3, kIn}, 12).to(input).set_requires_grad(true);
    const at::Tensor y = layer.forward(x);
    // MatMul8bitFp: CB.to(A.dtype).mul_(SCB / 127), F.linear, output in A's dtype.
    const at::Tensor dense = kernels::dequantize_int8_rowwise(layer.weight(), input,
                                                              kernels::Int8DequantOrder::kScaleFirst);
    EXPECT_EQ(y.scalar_type(), input);
    EXPECT_TRUE(at::equal(y, at::linear(x.detach(), dense)));
    const at::Tensor g = randn({2, 3, kOut}, 13).to(input);
    y.backward(g);
    const at::Tensor expected = at::matmul(g.reshape({-1, kOut}), dense).view({2, 3, kIn});
    EXPECT_TRUE(at::equal(x.grad(), expected));
  }
}

TEST(Linear8bitLt, LlmInt8PathCastsToFp16AndStaysWithinQuantizationError) {
  const at::Tensor w = randn({kOut, kIn}, 14, 0.02);
  const Linear8bitLt layer(w, Int8Path::kLlmInt8);
  const at::Tensor x = randn({6, kIn}, 15);
  const at::Tensor y = layer.forward(x);
  EXPECT_TRUE(at::equal(y, kernels::int8_linear_forward(x, layer.weight())));
  // No |x| >= 6 here (randn(6 x 128) stays below 6 with probability 1 - 2e-6): every column is
  // int8. x is cast to fp16 (|dx| <= 2^-11 |x|), then rounded to SCA/127 steps (|dx| <= SCA/254,
  // SCA = row absmax); likewise w (fp16 cast, SCB/254). So per product
  // |x^ w^ - x w| <= ex (|w| + ew) + |x| ew with ex = SCA/254 + 2^-11|x|, ew = SCB/254 + 2^-11|w|.
  // The int32 sum is exact (127^2 * 128 < 2^24); the rescale uses bitsandbytes' 6.200124e-05 for
  // 1/127^2 (relative 1.8e-5) and two fp32 roundings: 2e-5 of sum |x^||w^| covers it.
  ASSERT_LT(x.abs().max().item<double>(), 6.0);
  const at::Tensor xd = x.to(at::kDouble), wd = w.to(at::kDouble);
  const double fp16_u = std::ldexp(1.0, -11), slack = 1.0 + std::ldexp(1.0, -10);
  const at::Tensor ex = xd.abs().amax({1}, true) * (slack / 254.0) + xd.abs() * fp16_u;
  const at::Tensor ew = wd.abs().amax({1}, true) * (slack / 254.0) + wd.abs() * fp16_u;
  const at::Tensor bound = at::linear(ex, wd.abs() + ew) + at::linear(xd.abs(), ew) +
                           at::linear(xd.abs() + ex, wd.abs() + ew) * 2e-5;
  const at::Tensor err = (y.to(at::kDouble) - at::linear(xd, wd)).abs();
  EXPECT_TRUE(err.le(bound).all().item<bool>()) << "max error " << err.max().item<double>();
}

TEST(Linear8bitLt, StorageIsInt8PlusOneScalePerRow) {
  const Linear8bitLt layer(randn({kOut, kIn}, 16), Int8Path::kDequantizeMatmul);
  EXPECT_EQ(layer.storage_bytes(), kOut * kIn + 4 * kOut);
}

TEST(DenseLinear, IsPlainLinearWithoutCasts) {
  const at::Tensor w = randn({kOut, kIn}, 17).to(at::kBFloat16);
  const DenseLinear layer(w);
  const at::Tensor x = randn({2, kIn}, 18).to(at::kBFloat16);
  EXPECT_TRUE(at::equal(layer.forward(x), at::linear(x, w)));
  EXPECT_FALSE(layer.weight().requires_grad());
  EXPECT_THROW(layer.forward(x.to(at::kFloat)), c10::Error);  // no cast: LibTorch's dtype error
}

// ---- dequantization into shared buffers ---------------------------------------------------

// y and grad_x of matmul_4bit for a state, with or without buffers.
std::pair<at::Tensor, at::Tensor> run_4bit(const at::Tensor& x0, const at::Tensor& g,
                                           const std::shared_ptr<const kernels::QuantState4>& state,
                                           const c10::intrusive_ptr<DequantBuffers>& buffers) {
  at::Tensor x = x0.detach().clone().set_requires_grad(true);
  const at::Tensor y = matmul_4bit(x, state, buffers);
  y.backward(g);
  return {y.detach(), x.grad()};
}

TEST(DequantBuffers, Matmul4bitGivesTheAllocatingBitsForwardAndBackward) {
  for (at::ScalarType weight_dtype : {at::kFloat, at::kBFloat16})
    for (at::ScalarType compute : {at::kFloat, at::kBFloat16})
      for (bool dq : {false, true}) {
        // A bf16 weight under fp32 compute: backward dequantizes in bf16, then converts.
        const auto state = std::make_shared<const kernels::QuantState4>(kernels::quantize_4bit(
            randn({96, 128}, 1, 0.02).to(weight_dtype), QuantType4::kNf4, 64, dq));
        const at::Tensor x = randn({3, 4, 128}, 2).to(compute);
        const at::Tensor g = randn({3, 4, 96}, 3).to(compute);
        const auto buffers = c10::make_intrusive<DequantBuffers>();
        const auto [y0, gx0] = run_4bit(x, g, state, {});
        const auto [y1, gx1] = run_4bit(x, g, state, buffers);
        EXPECT_TRUE(at::equal(y0, y1)) << weight_dtype << " " << compute << " dq " << dq;
        EXPECT_TRUE(at::equal(gx0, gx1)) << weight_dtype << " " << compute << " dq " << dq;
        EXPECT_EQ(buffers->capacity(compute, at::kCPU), 96 * 128);
        EXPECT_EQ(buffers->capacity(weight_dtype, at::kCPU), 96 * 128);
      }
}

TEST(DequantBuffers, LayersShareOneBufferPerDtypeSizedForTheLargestWeight) {
  const auto buffers = c10::make_intrusive<DequantBuffers>();
  const Linear4bit small(randn({32, 64}, 4, 0.02), QuantType4::kNf4, false, at::kFloat, 64, false, buffers);
  const Linear4bit large(randn({64, 192}, 5, 0.02), QuantType4::kFp4, false, at::kFloat, 64, false, buffers);
  const Linear4bit tall(randn({192, 64}, 6, 0.02), QuantType4::kNf4, true, at::kFloat, 64, false, buffers);
  const at::Tensor y_small = small.forward(randn({2, 64}, 7));
  const at::Tensor before = y_small.clone();
  large.forward(randn({2, 192}, 8));
  tall.forward(randn({2, 64}, 9));
  EXPECT_EQ(buffers->capacity(at::kFloat, at::kCPU), 64 * 192) << "one buffer, not one per layer";
  EXPECT_EQ(buffers->capacity(at::kBFloat16, at::kCPU), 0);
  // A result never aliases the buffer: later layers' weights do not change it.
  EXPECT_TRUE(at::equal(y_small, before));
  // Each layer still gives exactly what it gives alone.
  const Linear4bit alone(randn({32, 64}, 4, 0.02), QuantType4::kNf4, false, at::kFloat);
  EXPECT_TRUE(at::equal(small.forward(randn({2, 64}, 7)), alone.forward(randn({2, 64}, 7))));
}

TEST(DequantBuffers, GraphKeepsOnlyTheQuantizedState) {
  const auto buffers = c10::make_intrusive<DequantBuffers>();
  const auto state = std::make_shared<const kernels::QuantState4>(
      kernels::quantize_4bit(randn({96, 128}, 10, 0.02), QuantType4::kNf4, 64, true));
  const at::Tensor x = randn({2, 128}, 11).set_requires_grad(true);
  const at::Tensor y = matmul_4bit(x, state, buffers);
  for (const at::Tensor& t : matmul_4bit_saved_tensors(y))
    EXPECT_FALSE(t.is_floating_point() && t.numel() == 96 * 128) << "a dequantized weight is kept";
}

TEST(DequantBuffers, Int8LayerGivesTheAllocatingBitsForwardAndBackward) {
  const at::Tensor w = randn({96, 128}, 12, 0.02);
  for (at::ScalarType input : {at::kFloat, at::kBFloat16})
    for (bool casts_grad : {true, false}) {
      const Linear8bitLt plain(w, Int8Path::kDequantizeMatmul, kernels::kInt8OutlierThreshold, casts_grad);
      const Linear8bitLt pooled(w, Int8Path::kDequantizeMatmul, kernels::kInt8OutlierThreshold, casts_grad,
                                c10::make_intrusive<DequantBuffers>());
      const at::Tensor x0 = randn({3, 4, 128}, 13).to(input);
      const at::Tensor g = randn({3, 4, 96}, 14).to(input);
      at::Tensor xa = x0.clone().set_requires_grad(true), xb = x0.clone().set_requires_grad(true);
      const at::Tensor ya = plain.forward(xa), yb = pooled.forward(xb);
      ya.backward(g);
      yb.backward(g);
      EXPECT_TRUE(at::equal(ya, yb)) << input;
      EXPECT_TRUE(at::equal(xa.grad(), xb.grad())) << input;
    }
}

}  // namespace
}  // namespace qlc::harness
