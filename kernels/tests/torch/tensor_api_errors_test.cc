// Every input problem of the tensor API is a KernelInputError naming the function, the argument
// and what was expected; NaN/Inf weights are refused where bitsandbytes would quantize garbage.
#include <gtest/gtest.h>

#include <ATen/Context.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>

#include <limits>
#include <vector>

#include "qlc/kernels/tensor_api.h"
#include "tensor_test_support.h"

namespace qlc::kernels {
namespace {

using testing::expect_error;
using testing::normal_values;
using testing::tensor_of;

constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

at::Tensor meta_tensor(std::vector<int64_t> shape, at::ScalarType dtype) {
  return at::empty(shape, at::TensorOptions().dtype(dtype).device(at::kMeta));
}

TEST(TensorApiErrors, NanAndInfWeightsAreCountedAndLocated) {
  std::vector<float> v = normal_values(64, 1.0f, 1);
  v[17] = kNan;
  v[20] = kInf;
  v[30] = -kInf;
  try {
    quantize_4bit(tensor_of(v, {64}, at::kFloat), QuantType4::kNf4);
    FAIL() << "no error";
  } catch (const KernelInputError& e) {
    EXPECT_STREQ(e.what(),
                 "quantize_4bit: weight contains 3 NaN/Inf values (first at flat index 17); "
                 "bitsandbytes would silently produce garbage");
  }
  // The index is the row-major position in the tensor as given, also for a transposed view:
  // base[2][1] is view[1][2], flat index 1 * 4 + 2.
  std::vector<float> m(4 * 8, 1.0f);
  m[2 * 8 + 1] = kNan;
  const at::Tensor view = tensor_of(m, {4, 8}, at::kFloat).t();
  expect_error<KernelInputError>([&] { quantize_4bit(view, QuantType4::kFp4, 64, true); },
                                 {"quantize_4bit: weight contains 1 NaN/Inf value (first at flat index 6)"});
  for (at::ScalarType dtype : {at::kHalf, at::kBFloat16})
    expect_error<KernelInputError>([&] { quantize_4bit(tensor_of(v, {64}, at::kFloat).to(dtype), QuantType4::kNf4); },
                                   {"weight contains 3 NaN/Inf values"});
  expect_error<KernelInputError>([&] { quantize_8bit_blockwise(tensor_of(v, {64}, at::kFloat)); },
                                 {"quantize_8bit_blockwise: x contains 3 NaN/Inf values (first at flat index 17)"});
  expect_error<KernelInputError>([&] { quantize_int8_rowwise(tensor_of(v, {8, 8}, at::kFloat)); },
                                 {"quantize_int8_rowwise: weight contains 3 NaN/Inf values"});
}

TEST(TensorApiErrors, NonFiniteScanOverThreadChunksFindsTheFirst) {
  // Large enough to be scanned in several chunks: the count is the total, the index the first.
  std::vector<float> v(300000, 0.5f);
  v[290000] = kNan;
  v[150001] = -kInf;
  v[150000] = kInf;
  for (at::ScalarType dtype : {at::kFloat, at::kHalf, at::kBFloat16})
    expect_error<KernelInputError>([&] { quantize_4bit(tensor_of(v, {300000}, at::kFloat).to(dtype), QuantType4::kNf4); },
                                   {"quantize_4bit: weight contains 3 NaN/Inf values (first at flat index 150000)"});
}

TEST(TensorApiErrors, WrongDtypes) {
  expect_error<KernelInputError>([] { quantize_4bit(at::zeros({4}, at::kDouble), QuantType4::kNf4); },
                                 {"quantize_4bit: weight has dtype fp64; expected fp32, fp16 or bf16"});
  expect_error<KernelInputError>([] { quantize_8bit_blockwise(at::zeros({4}, at::kInt)); },
                                 {"quantize_8bit_blockwise: x has dtype int32; expected fp32, fp16 or bf16"});
  expect_error<KernelInputError>([] { quantize_int8_rowwise(at::zeros({2, 2}, at::kChar)); },
                                 {"quantize_int8_rowwise: weight has dtype int8"});
  const QuantState4 s = quantize_4bit(at::zeros({8}, at::kFloat), QuantType4::kNf4);
  expect_error<KernelInputError>([&] { dequantize_4bit(s, at::kDouble); },
                                 {"dequantize_4bit: output dtype fp64 is not supported; expected fp32, fp16 or bf16"});
  QuantState4 bad = s;
  bad.absmax = bad.absmax.to(at::kHalf);
  expect_error<KernelInputError>([&] { dequantize_4bit(bad); },
                                 {"dequantize_4bit: state absmax has dtype fp16, expected fp32"});
  const Int8Weight w = quantize_int8_rowwise(at::zeros({3, 4}, at::kFloat));
  expect_error<KernelInputError>([&] { int8_linear_forward(at::zeros({2, 4}, at::kInt), w); },
                                 {"int8_linear_forward: x has dtype int32; expected fp32, fp16 or bf16"});
  expect_error<KernelInputError>([&] { int8_linear_forward(at::zeros({2, 4}, at::kFloat), Int8Weight{w.cb.to(at::kFloat), w.scb}); },
                                 {"int8_linear_forward: weight.cb has dtype fp32; expected int8"});
}

TEST(TensorApiErrors, UnsupportedDevicesAndUndefinedTensors) {
  expect_error<KernelInputError>([] { quantize_4bit(meta_tensor({64}, at::kFloat), QuantType4::kNf4); },
                                 {"quantize_4bit: weight is on unsupported device meta; expected a CPU or CUDA tensor"});
  expect_error<KernelInputError>([] { quantize_int8_activation(meta_tensor({2, 2}, at::kHalf)); },
                                 {"quantize_int8_activation: x is on unsupported device meta"});
  expect_error<KernelInputError>([] { quantize_4bit(at::Tensor(), QuantType4::kNf4); },
                                 {"quantize_4bit: weight is an undefined tensor; expected a tensor"});
  // Tensors of one call on different devices.
  const Int8Weight w = quantize_int8_rowwise(at::zeros({3, 4}, at::kFloat));
  expect_error<KernelInputError>([&] { int8_linear_forward(at::zeros({2, 4}, at::kFloat), Int8Weight{meta_tensor({3, 4}, at::kChar), meta_tensor({3}, at::kFloat)}); },
                                 {"int8_linear_forward: weight.cb is on meta but x is on cpu; expected both on one device"});
  QuantState4 s = quantize_4bit(at::zeros({8}, at::kFloat), QuantType4::kNf4);
  s.absmax = meta_tensor({1}, at::kFloat);
  expect_error<KernelInputError>([&] { dequantize_4bit(s); }, {"dequantize_4bit: state absmax is on meta but packed is on cpu"});
}

TEST(TensorApiErrors, UnsupportedBlocksizes) {
  for (int64_t blocksize : {int64_t{0}, int64_t{16}, int64_t{100}, int64_t{8192}}) {
    expect_error<KernelInputError>([&] { quantize_4bit(at::zeros({64}, at::kFloat), QuantType4::kNf4, blocksize); },
                                   {"quantize_4bit: blocksize " + std::to_string(blocksize) +
                                    " is not supported; expected a power of two from 32 to 4096"});
    expect_error<KernelInputError>([&] { quantize_8bit_blockwise(at::zeros({64}, at::kFloat), blocksize); },
                                   {"quantize_8bit_blockwise: blocksize " + std::to_string(blocksize)});
  }
  QuantState4 s = quantize_4bit(at::zeros({8}, at::kFloat), QuantType4::kNf4);
  s.blocksize = 48;
  expect_error<KernelInputError>([&] { dequantize_4bit(s); }, {"dequantize_4bit: state blocksize 48 is not a power of two"});
}

TEST(TensorApiErrors, BadShapes) {
  expect_error<KernelInputError>([] { quantize_int8_rowwise(at::zeros({2, 3, 4}, at::kFloat)); },
                                 {"quantize_int8_rowwise: weight has shape [2, 3, 4]; expected a 2-D [out_features, in_features] matrix"});
  const Int8Weight w = quantize_int8_rowwise(at::zeros({3, 4}, at::kFloat));
  expect_error<KernelInputError>([&] { int8_linear_forward(at::zeros({2, 5}, at::kFloat), w); },
                                 {"int8_linear_forward: x has shape [2, 5]; expected [..., 4] (weight.cb is [3, 4])"});
  expect_error<KernelInputError>([&] { int8_linear_forward(at::zeros({2, 4}, at::kFloat), w, at::zeros({4}, at::kFloat)); },
                                 {"int8_linear_forward: bias has shape [4]; expected [3]"});
  expect_error<KernelInputError>([&] { int8_linear_forward(at::zeros({2, 4}, at::kFloat), Int8Weight{w.cb, at::zeros({2}, at::kFloat)}); },
                                 {"int8_linear_forward: weight.scb has shape [2]; expected [3] (one scale per row of weight.cb)"});
  expect_error<KernelInputError>([&] { quantize_int8_activation(at::zeros({}, at::kFloat)); },
                                 {"quantize_int8_activation: x is a scalar; expected at least one dimension"});
  QuantState4 s = quantize_4bit(at::zeros({10}, at::kFloat), QuantType4::kNf4);
  s.shape = {12};
  expect_error<KernelInputError>([&] { dequantize_4bit(s); },
                                 {"dequantize_4bit: state packed has 5 elements, expected 6 (shape [12], blocksize 64)"});
  QuantState8 q8 = quantize_8bit_blockwise(at::zeros({300}, at::kFloat), 256);
  q8.absmax = at::zeros({1}, at::kFloat);
  expect_error<KernelInputError>([&] { dequantize_8bit_blockwise(q8); },
                                 {"dequantize_8bit_blockwise: state.absmax has 1 elements; 300 values in blocks of 256 need 2"});
}

TEST(TensorApiErrors, Fp16OverflowAndThresholds) {
  // Int8Params casts the weight to fp16 first: 70000 would become inf there.
  expect_error<KernelInputError>([] { quantize_int8_rowwise(tensor_of<float>({1.0f, 70000.0f}, {1, 2}, at::kFloat)); },
                                 {"quantize_int8_rowwise: weight cast to fp16 contains 1 NaN/Inf value (first at flat index 1); "
                                  "bitsandbytes quantizes fp16(weight), so |w| must stay below 65520"});
  const Int8Weight w = quantize_int8_rowwise(at::zeros({3, 4}, at::kFloat));
  for (double t : {-1.0, double(kNan), double(kInf)})
    expect_error<KernelInputError>([&] { int8_linear_forward(at::zeros({2, 4}, at::kFloat), w, at::Tensor(), t); },
                                   {"int8_linear_forward: threshold", "expected a finite value >= 0 (0 disables outlier columns)"});
  QuantState4 s = quantize_4bit(at::ones({8}, at::kFloat), QuantType4::kNf4, 64, true);
  s.nested->offset = kNan;
  expect_error<KernelInputError>([&] { dequantize_4bit(s); }, {"dequantize_4bit: state nested offset is nan, expected a finite mean"});
}

// Where LibTorch has CUDA and a GPU is usable, CUDA tensors must give the CPU's bits or, in a build
// without the CUDA kernels, say so.
TEST(TensorApi, CudaTensorsMatchCpu_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "LibTorch has no CUDA or no GPU is usable";
  const at::Tensor w = tensor_of(normal_values(4096, 1.0f, 2), {64, 64}, at::kFloat);
  try {
    const QuantState4 gpu = quantize_4bit(w.to(at::kCUDA), QuantType4::kNf4, 64, true);
    const QuantState4 cpu = quantize_4bit(w, QuantType4::kNf4, 64, true);
    EXPECT_TRUE(gpu.packed.to(at::kCPU).equal(cpu.packed));
    EXPECT_TRUE(gpu.absmax.to(at::kCPU).equal(cpu.absmax));
    EXPECT_TRUE(dequantize_4bit(gpu).to(at::kCPU).equal(dequantize_4bit(cpu)));
  } catch (const KernelInputError& e) {
    EXPECT_NE(std::string(e.what()).find("built without CUDA kernels"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qlc::kernels
