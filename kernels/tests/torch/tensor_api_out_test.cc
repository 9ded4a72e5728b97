// The out= forms of the tensor API: the bits the allocating forms return (which call them), written
// into the caller's buffer (same storage after the call), and a clear error for every output that
// does not fit (dtype, device, shape, contiguity, undefined).
#include <gtest/gtest.h>

#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>

#include <limits>
#include <vector>

#include "qlc/kernels/tensor_api.h"
#include "tensor_test_support.h"

namespace qlc::kernels {
namespace {

using testing::bytes_of;
using testing::expect_error;
using testing::normal_values;
using testing::tensor_of;

constexpr at::ScalarType kFloatTypes[] = {at::kFloat, at::kHalf, at::kBFloat16};

at::Tensor weights(std::vector<int64_t> shape, at::ScalarType dtype, unsigned seed) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return tensor_of(normal_values(n, 0.5f, seed), shape, at::kFloat).to(dtype);
}

// A buffer whose old contents would show: NaN everywhere, so any element left unwritten fails.
at::Tensor stale(std::vector<int64_t> shape, at::ScalarType dtype) {
  return at::full(shape, std::numeric_limits<float>::quiet_NaN(), at::TensorOptions().dtype(dtype));
}

at::Tensor meta_tensor(std::vector<int64_t> shape, at::ScalarType dtype) {
  return at::empty(shape, at::TensorOptions().dtype(dtype).device(at::kMeta));
}

// Shapes with a short last block and an odd count (a padded nibble) besides whole blocks.
const std::vector<std::vector<int64_t>> kShapes = {{8, 64}, {3, 33}, {7}, {0}};

TEST(TensorApiOut, Dequantize4bitOutIsTheAllocatingFormsBits) {
  for (QuantType4 type : {QuantType4::kNf4, QuantType4::kFp4})
    for (bool dq : {false, true})
      for (const auto& shape : kShapes) {
        const QuantState4 s = quantize_4bit(weights(shape, at::kBFloat16, 3), type, 64, dq);
        for (at::ScalarType dtype : kFloatTypes) {
          const at::Tensor out = stale(shape, dtype);
          const void* storage = out.data_ptr();
          dequantize_4bit_out(s, out);
          EXPECT_EQ(out.data_ptr(), storage);
          EXPECT_EQ(bytes_of(out), bytes_of(dequantize_4bit(s, dtype)))
              << to_string(type) << " dq=" << dq << " numel " << s.numel() << " " << dtype;
        }
      }
}

TEST(TensorApiOut, ReusedOutputTakesEachStatesBits) {
  // One buffer, two weights: the second call leaves nothing of the first.
  const at::Tensor out = stale({16, 64}, at::kFloat);
  for (unsigned seed : {1u, 2u}) {
    const QuantState4 s = quantize_4bit(weights({16, 64}, at::kFloat, seed), QuantType4::kNf4);
    dequantize_4bit_out(s, out);
    EXPECT_EQ(bytes_of(out), bytes_of(dequantize_4bit(s)));
  }
}

TEST(TensorApiOut, Quantize4bitOutRequantizesIntoTheSameBuffers) {
  for (bool dq : {false, true})
    for (at::ScalarType dtype : kFloatTypes) {
      QuantState4 s = quantize_4bit(weights({5, 100}, at::kFloat, 7), QuantType4::kFp4, 128, dq);
      const void* packed = s.packed.data_ptr();
      const void* absmax = s.absmax.data_ptr();
      const at::Tensor next = weights({5, 100}, dtype, 8);
      quantize_4bit_out(next, s);
      const QuantState4 want = quantize_4bit(next, QuantType4::kFp4, 128, dq);
      EXPECT_EQ(s.packed.data_ptr(), packed);
      EXPECT_EQ(s.absmax.data_ptr(), absmax);
      EXPECT_EQ(bytes_of(s.packed), bytes_of(want.packed));
      EXPECT_EQ(bytes_of(s.absmax), bytes_of(want.absmax));
      EXPECT_EQ(bytes_of(s.code), bytes_of(want.code));
      EXPECT_EQ(s.shape, want.shape);
      EXPECT_EQ(s.dtype, dtype);
      ASSERT_EQ(s.nested.has_value(), dq);
      if (dq) {
        EXPECT_EQ(bytes_of(s.nested->absmax2), bytes_of(want.nested->absmax2));
        EXPECT_EQ(s.nested->offset, want.nested->offset);
      }
    }
}

TEST(TensorApiOut, Blockwise8bitOutFormsAreTheAllocatingFormsBits) {
  for (at::ScalarType in : kFloatTypes) {
    QuantState8 s = quantize_8bit_blockwise(weights({3, 300}, at::kFloat, 4), 256);
    const void* q = s.q.data_ptr();
    const at::Tensor x = weights({3, 300}, in, 5);
    quantize_8bit_blockwise_out(x, s, Search8::kNearest);
    const QuantState8 want = quantize_8bit_blockwise(x, 256, true, Search8::kNearest);
    EXPECT_EQ(s.q.data_ptr(), q);
    EXPECT_EQ(bytes_of(s.q), bytes_of(want.q));
    EXPECT_EQ(bytes_of(s.absmax), bytes_of(want.absmax));
    EXPECT_EQ(s.dtype, in);
    for (at::ScalarType dtype : kFloatTypes) {
      const at::Tensor out = stale({3, 300}, dtype);
      dequantize_8bit_blockwise_out(s, out);
      EXPECT_EQ(bytes_of(out), bytes_of(dequantize_8bit_blockwise(s, dtype)));
    }
  }
}

TEST(TensorApiOut, Int8RowwiseOutIsTheAllocatingFormsBits) {
  const Int8Weight w = quantize_int8_rowwise(weights({6, 40}, at::kFloat, 6));
  for (Int8DequantOrder order : {Int8DequantOrder::kVectorwise, Int8DequantOrder::kScaleFirst})
    for (at::ScalarType dtype : kFloatTypes) {
      const at::Tensor out = stale({6, 40}, dtype);
      dequantize_int8_rowwise_out(w, out, order);
      EXPECT_EQ(bytes_of(out), bytes_of(dequantize_int8_rowwise(w, dtype, order)));
    }
}

TEST(TensorApiOut, OutputsThatDoNotFitAreNamed) {
  const QuantState4 s = quantize_4bit(weights({4, 64}, at::kFloat, 1), QuantType4::kNf4);
  expect_error<KernelInputError>([&] { dequantize_4bit_out(s, at::Tensor()); },
                                 {"dequantize_4bit_out: out is an undefined tensor; expected a tensor"});
  expect_error<KernelInputError>([&] { dequantize_4bit_out(s, at::zeros({4, 64}, at::kDouble)); },
                                 {"dequantize_4bit_out: out has dtype fp64; expected fp32, fp16 or bf16"});
  expect_error<KernelInputError>([&] { dequantize_4bit_out(s, meta_tensor({4, 64}, at::kFloat)); },
                                 {"dequantize_4bit_out: out is on meta but state.packed is on cpu; expected both on one device"});
  expect_error<KernelInputError>([&] { dequantize_4bit_out(s, at::zeros({64, 4}, at::kFloat)); },
                                 {"dequantize_4bit_out: out has shape [64, 4]; expected [4, 64]"});
  expect_error<KernelInputError>([&] { dequantize_4bit_out(s, at::zeros({256}, at::kFloat)); },
                                 {"dequantize_4bit_out: out has shape [256]; expected [4, 64]"});
  expect_error<KernelInputError>([&] { dequantize_4bit_out(s, at::zeros({64, 4}, at::kFloat).t()); },
                                 {"dequantize_4bit_out: out is not contiguous (strides [1, 4]); expected a contiguous tensor"});
  QuantState4 bad = s;
  bad.blocksize = 48;
  expect_error<KernelInputError>([&] { dequantize_4bit_out(bad, at::zeros({4, 64}, at::kFloat)); },
                                 {"dequantize_4bit_out: state blocksize 48 is not a power of two"});

  QuantState8 q8 = quantize_8bit_blockwise(weights({300}, at::kFloat, 2), 256);
  expect_error<KernelInputError>([&] { dequantize_8bit_blockwise_out(q8, at::zeros({300}, at::kChar)); },
                                 {"dequantize_8bit_blockwise_out: out has dtype int8; expected fp32, fp16 or bf16"});
  expect_error<KernelInputError>([&] { dequantize_8bit_blockwise_out(q8, at::zeros({3, 100}, at::kFloat)); },
                                 {"dequantize_8bit_blockwise_out: out has shape [3, 100]; expected [300]"});
  expect_error<KernelInputError>([&] { dequantize_8bit_blockwise_out(q8, meta_tensor({300}, at::kFloat)); },
                                 {"dequantize_8bit_blockwise_out: out is on meta but state.q is on cpu"});
  expect_error<KernelInputError>([&] { dequantize_8bit_blockwise_out(q8, at::zeros({600}, at::kFloat).slice(0, 0, 600, 2)); },
                                 {"dequantize_8bit_blockwise_out: out is not contiguous (strides [2])"});

  const Int8Weight w = quantize_int8_rowwise(weights({3, 4}, at::kFloat, 3));
  expect_error<KernelInputError>([&] { dequantize_int8_rowwise_out(w, at::zeros({4, 3}, at::kFloat)); },
                                 {"dequantize_int8_rowwise_out: out has shape [4, 3]; expected [3, 4]"});
  expect_error<KernelInputError>([&] { dequantize_int8_rowwise_out(w, at::zeros({4, 3}, at::kHalf).t()); },
                                 {"dequantize_int8_rowwise_out: out is not contiguous"});
  expect_error<KernelInputError>([&] { dequantize_int8_rowwise_out(w, at::zeros({3, 4}, at::kInt)); },
                                 {"dequantize_int8_rowwise_out: out has dtype int32; expected fp32, fp16 or bf16"});
}

TEST(TensorApiOut, QuantizeBuffersThatDoNotFitAreNamed) {
  QuantState4 s = quantize_4bit(weights({4, 64}, at::kFloat, 1), QuantType4::kNf4);
  // Another weight size needs other buffers: 200 elements pack into 100 bytes in 4 blocks.
  expect_error<KernelInputError>([&] { quantize_4bit_out(weights({200}, at::kFloat, 2), s); },
                                 {"quantize_4bit_out: state.packed has shape [128, 1]; expected [100, 1]"});
  QuantState4 wrong_absmax = s;
  wrong_absmax.absmax = at::zeros({4}, at::kByte);  // uint8 codes belong to double quantization
  expect_error<KernelInputError>([&] { quantize_4bit_out(weights({4, 64}, at::kFloat, 2), wrong_absmax); },
                                 {"quantize_4bit_out: state.absmax has dtype uint8; expected fp32"});
  QuantState4 dq = quantize_4bit(weights({4, 64}, at::kFloat, 1), QuantType4::kNf4, 64, true);
  dq.nested->absmax2 = at::zeros({2}, at::kFloat);
  expect_error<KernelInputError>([&] { quantize_4bit_out(weights({4, 64}, at::kFloat, 2), dq); },
                                 {"quantize_4bit_out: state.nested.absmax2 has shape [2]; expected [1]"});
  QuantState4 on_meta = s;
  on_meta.packed = meta_tensor({128, 1}, at::kByte);
  expect_error<KernelInputError>([&] { quantize_4bit_out(weights({4, 64}, at::kFloat, 2), on_meta); },
                                 {"quantize_4bit_out: state.packed is on meta but weight is on cpu"});
  expect_error<KernelInputError>([&] { quantize_4bit_out(at::zeros({4, 64}, at::kDouble), s); },
                                 {"quantize_4bit_out: weight has dtype fp64; expected fp32, fp16 or bf16"});
  std::vector<float> v = normal_values(256, 1.0f, 3);
  v[5] = std::numeric_limits<float>::infinity();
  // The CPU kernel refuses NaN/Inf while it quantizes (no pass of its own over the weight), so
  // codes before the bad value may already be rewritten: the state's packed is reset, and the
  // state can no longer be read as if it held either weight.
  QuantState4 refused = quantize_4bit(weights({4, 64}, at::kFloat, 2), QuantType4::kNf4, 64);
  const std::vector<int64_t> shape_before = refused.shape;
  expect_error<KernelInputError>([&] { quantize_4bit_out(tensor_of(v, {4, 64}, at::kFloat), refused); },
                                 {"quantize_4bit_out: weight contains 1 NaN/Inf value (first at flat index 5)",
                                  "state.packed was partly rewritten and is now reset (undefined)"});
  EXPECT_FALSE(refused.packed.defined());
  EXPECT_EQ(refused.shape, shape_before);
  expect_error<KernelInputError>([&] { dequantize_4bit_out(refused, at::zeros({4, 64}, at::kFloat)); },
                                 {"dequantize_4bit_out: state packed is undefined"});
  // The allocating form leaves nothing behind and says nothing of a state.
  expect_error<KernelInputError>([&] { quantize_4bit(tensor_of(v, {4, 64}, at::kFloat), QuantType4::kNf4, 64); },
                                 {"quantize_4bit: weight contains 1 NaN/Inf value (first at flat index 5)"});

  QuantState8 q8 = quantize_8bit_blockwise(weights({300}, at::kFloat, 2), 256);
  expect_error<KernelInputError>([&] { quantize_8bit_blockwise_out(weights({3, 100}, at::kFloat, 2), q8); },
                                 {"quantize_8bit_blockwise_out: state.q has shape [300]; expected [3, 100]"});
  QuantState8 q8_bad = q8;
  q8_bad.absmax = at::zeros({1}, at::kFloat);
  expect_error<KernelInputError>([&] { quantize_8bit_blockwise_out(weights({300}, at::kFloat, 2), q8_bad); },
                                 {"quantize_8bit_blockwise_out: state.absmax has shape [1]; expected [2]"});
  QuantState8 q8_strided = q8;
  q8_strided.q = at::zeros({600}, at::kByte).slice(0, 0, 600, 2);
  expect_error<KernelInputError>([&] { quantize_8bit_blockwise_out(weights({300}, at::kFloat, 2), q8_strided); },
                                 {"quantize_8bit_blockwise_out: state.q is not contiguous"});
}

}  // namespace
}  // namespace qlc::kernels
