// The tensor API's 4-bit and 8-bit blockwise paths: bitsandbytes' golden vectors through
// at::Tensor, every input dtype and layout, empty / one-element / odd / all-zero inputs, and
// round-trip error bounds derived from the code books.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <regex>
#include <vector>

#include "qlc/kernels/blockwise_4bit.h"
#include "qlc/kernels/double_quant.h"
#include "qlc/kernels/dynamic_map.h"
#include "qlc/kernels/tensor_api.h"
#include "support/test_paths.h"
#include "tensor_test_support.h"

namespace qlc::kernels {
namespace {

using testing::bytes_of;
using testing::floats_of;
using testing::normal_values;
using testing::tensor_of;
using testing::values_of;

// Bits of floats with -0.0 read as +0.0: bitsandbytes' dequantizers disagree on the sign of FP4's
// pattern 8 (see goldens_test.cc); values are equal.
std::vector<uint32_t> bits_zero_unsigned(const std::vector<float>& v) {
  std::vector<uint32_t> out(v.size());
  std::memcpy(out.data(), v.data(), v.size() * 4);
  for (uint32_t& u : out)
    if (u == 0x80000000u) u = 0;
  return out;
}

// Largest distance between neighbouring values of a code table (sorted first).
double max_gap(const float* code, int n) {
  std::vector<float> v(code, code + n);
  std::sort(v.begin(), v.end());
  double g = 0.0;
  for (int i = 1; i < n; ++i) g = std::max(g, double(v[i]) - double(v[i - 1]));
  return g;
}

std::vector<std::string> golden_cases() {
  std::vector<std::string> names;
  const std::regex pattern(R"(.*\.(nf4|fp4)\.b\d+\.safetensors)");
  for (const auto& entry : std::filesystem::directory_iterator(qlc::testing::goldens_dir())) {
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, pattern)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

class TensorApiGolden : public ::testing::TestWithParam<std::string> {};

// bitsandbytes' own quantize_4bit output (with and without compress_statistics) through the
// tensor API, bit for bit.
TEST_P(TensorApiGolden, QuantizeAndDequantizeMatchBitsandbytes) {
  const StFile g = read_safetensors((qlc::testing::goldens_dir() / GetParam()).string());
  const QuantType4 type = quant_type4_from_string(g.metadata.at("quant_type"));
  const int64_t blocksize = std::stoll(g.metadata.at("blocksize"));
  const at::Tensor input = tensor_of(g.at("input"), at::kFloat);

  const QuantState4 plain = quantize_4bit(input, type, blocksize, false);
  EXPECT_EQ(bytes_of(plain.packed), g.at("packed").data);
  EXPECT_EQ(bytes_of(plain.absmax), g.at("absmax").data);
  EXPECT_EQ(bits_zero_unsigned(floats_of(dequantize_4bit(plain))),
            bits_zero_unsigned(floats_of(tensor_of(g.at("dequant"), at::kFloat))));

  const QuantState4 dq = quantize_4bit(input, type, blocksize, true);
  ASSERT_TRUE(dq.nested.has_value());
  EXPECT_EQ(bytes_of(dq.packed), g.at("packed").data);
  EXPECT_EQ(bytes_of(dq.absmax), g.at("dq.qabsmax").data);
  EXPECT_EQ(bytes_of(dq.nested->absmax2), g.at("dq.absmax2").data);
  EXPECT_EQ(std::memcmp(&dq.nested->offset, g.at("dq.offset").data.data(), 4), 0);
  EXPECT_EQ(bits_zero_unsigned(floats_of(dequantize_4bit(dq))),
            bits_zero_unsigned(floats_of(tensor_of(g.at("dq.dequant"), at::kFloat))));
}

INSTANTIATE_TEST_SUITE_P(AllFiles, TensorApiGolden, ::testing::ValuesIn(golden_cases()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param.substr(0, info.param.size() - 12);
                           for (char& c : name)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

// fp16 / bf16 weights quantize their own values (the reference on the same 16-bit buffer, which
// goldens_test.cc ties to bitsandbytes); every output dtype is the fp32 result cast by LibTorch.
TEST(TensorApi4bit, SixteenBitInputsAndOutputs) {
  const at::Tensor w32 = tensor_of(normal_values(3 * 200, 0.7f, 1), {3, 200}, at::kFloat);
  for (at::ScalarType dtype : {at::kHalf, at::kBFloat16}) {
    const at::Tensor w = w32.to(dtype);
    for (QuantType4 type : {QuantType4::kNf4, QuantType4::kFp4}) {
      const QuantState4 s = quantize_4bit(w, type, 64, false);
      std::vector<uint8_t> packed(static_cast<size_t>(packed_bytes_4bit(600)));
      std::vector<float> absmax(static_cast<size_t>(num_blocks(600, 64)));
      if (dtype == at::kHalf) {
        const auto raw = values_of<Fp16>(w);
        quantize_4bit_reference(raw.data(), 600, 64, type, packed.data(), absmax.data());
      } else {
        const auto raw = values_of<Bf16>(w);
        quantize_4bit_reference(raw.data(), 600, 64, type, packed.data(), absmax.data());
      }
      EXPECT_EQ(bytes_of(s.packed), packed);
      EXPECT_EQ(values_of<float>(s.absmax), absmax);
      EXPECT_EQ(s.dtype, dtype);
      const at::Tensor d = dequantize_4bit(s);
      EXPECT_EQ(d.scalar_type(), dtype);
      EXPECT_EQ(d.sizes().vec(), (std::vector<int64_t>{3, 200}));
      const at::Tensor d32 = dequantize_4bit(s, at::kFloat);
      for (at::ScalarType out : {at::kHalf, at::kBFloat16})
        EXPECT_EQ(bytes_of(dequantize_4bit(s, out)), bytes_of(d32.to(out)));
    }
  }
}

TEST(TensorApi4bit, NonContiguousEqualsContiguousCopy) {
  const at::Tensor base = tensor_of(normal_values(64 * 96, 1.0f, 2), {64, 96}, at::kFloat);
  for (const at::Tensor& view : {base.t(), base.narrow(1, 1, 50), base.slice(1, 0, 96, 3)}) {
    ASSERT_FALSE(view.is_contiguous());
    for (bool dq : {false, true}) {
      const QuantState4 a = quantize_4bit(view, QuantType4::kNf4, 64, dq);
      const QuantState4 b = quantize_4bit(view.contiguous(), QuantType4::kNf4, 64, dq);
      EXPECT_EQ(bytes_of(a.packed), bytes_of(b.packed));
      EXPECT_EQ(bytes_of(a.absmax), bytes_of(b.absmax));
      EXPECT_EQ(a.shape, view.sizes().vec());
      EXPECT_EQ(bytes_of(dequantize_4bit(a)), bytes_of(dequantize_4bit(b)));
    }
  }
}

TEST(TensorApi4bit, EmptyTensors) {
  for (const std::vector<int64_t>& shape : {std::vector<int64_t>{0}, {0, 7}, {5, 0}}) {
    for (bool dq : {false, true}) {
      const QuantState4 s = quantize_4bit(at::empty(shape, at::kFloat), QuantType4::kFp4, 64, dq);
      EXPECT_EQ(s.packed.sizes().vec(), (std::vector<int64_t>{0, 1}));
      EXPECT_EQ(s.absmax.numel(), 0);
      if (dq) {
        EXPECT_TRUE(std::isnan(s.nested->offset));  // bitsandbytes: mean of no absmax values
        EXPECT_EQ(s.nested->absmax2.numel(), 0);
      }
      EXPECT_EQ(dequantize_4bit(s).sizes().vec(), shape);
    }
  }
}

TEST(TensorApi4bit, OneElementAndOddCountsPadTheCodeOfZero) {
  // NF4: 0.5 / 0.5 = 1.0 is code 15; the pad is the code of 0.0 (7). FP4: +1.0 is pattern 3
  // (exponent 01, mantissa 1: 12/12), 0.0 pattern 0.
  EXPECT_EQ(bytes_of(quantize_4bit(tensor_of<float>({0.5f}, {1}, at::kFloat), QuantType4::kNf4).packed),
            (std::vector<uint8_t>{0xF7}));
  EXPECT_EQ(bytes_of(quantize_4bit(tensor_of<float>({0.5f}, {1}, at::kFloat), QuantType4::kFp4).packed),
            (std::vector<uint8_t>{0x30}));
  // [1, -1, 0.5]: codes 15, 0, and 0.5 below the midpoint (0.4407 + 0.5626) / 2 = 0.5017 -> 12.
  const QuantState4 s = quantize_4bit(tensor_of<float>({1.0f, -1.0f, 0.5f}, {3}, at::kFloat), QuantType4::kNf4);
  EXPECT_EQ(bytes_of(s.packed), (std::vector<uint8_t>{0xF0, 0xC7}));
  EXPECT_EQ(floats_of(dequantize_4bit(s)),
            (std::vector<float>{1.0f, -1.0f, codebook4(QuantType4::kNf4).code[12]}));
}

TEST(TensorApi4bit, AllZeroBlocks) {
  // A full all-zero block stores absmax 0; a short one stores bitsandbytes' clamp 1e-38. Both
  // encode the code of 0.0 and dequantize to zeros.
  std::vector<float> v(64 + 10, 0.0f);
  const QuantState4 s = quantize_4bit(tensor_of(v, {74}, at::kFloat), QuantType4::kNf4);
  EXPECT_EQ(values_of<float>(s.absmax), (std::vector<float>{0.0f, 1e-38f}));
  for (uint8_t b : bytes_of(s.packed)) EXPECT_EQ(b, 0x77);
  for (float f : floats_of(dequantize_4bit(s))) EXPECT_EQ(f, 0.0f);
}

// Per element |x - code * absmax| <= absmax * g / 2, g the largest gap between neighbouring codes
// (nearest-code rounding); the scaled value x * (1/absmax) is off by at most 2^-22 (two fp32
// roundings, or a subnormal reciprocal for absmax near FLT_MAX: 2^-150 * absmax <= 2^-22), and the
// dequantization's product by 2^-24 relative: slack absmax * 2^-21.
TEST(TensorApi4bit, RoundTripErrorWithinHalfTheLargestGap) {
  for (QuantType4 type : {QuantType4::kNf4, QuantType4::kFp4}) {
    const double g = max_gap(codebook4(type).code, 16);
    for (float magnitude : {1e-30f, 1e-3f, 1.0f, 1e4f, 1e30f, 1e38f}) {
      const std::vector<float> x = normal_values(1000, magnitude, 3);
      std::vector<float> xc(x);
      for (float& v : xc) v = std::max(-3.4e38f, std::min(3.4e38f, v));
      const QuantState4 s = quantize_4bit(tensor_of(xc, {1000}, at::kFloat), type, 64);
      const std::vector<float> back = floats_of(dequantize_4bit(s));
      const std::vector<float> absmax = values_of<float>(s.absmax);
      for (size_t i = 0; i < xc.size(); ++i) {
        const double am = absmax[i / 64];
        ASSERT_LE(std::abs(double(back[i]) - double(xc[i])), am * (g / 2 + std::ldexp(1.0, -21)))
            << to_string(type) << " magnitude " << magnitude << " index " << i;
      }
    }
  }
}

// With double quantization the 4-bit codes were chosen with the true absmax but are scaled by the
// restored one: |x - c am'| <= am g / 2 + |am - am'| (|c| <= 1). The restored absmax is off by the
// 8-bit code's error, absmax2 * (g8 / 2 + 1/65535) (nearest code of a value snapped to a grid of
// spacing 2/65535), plus fp32 roundings of the subtraction and the restore, 2^-22 (|am| + |offset|).
TEST(TensorApi4bit, DoubleQuantErrorWithinDerivedBound) {
  const double g8 = max_gap(dynamic_map(true).code, 256);
  for (QuantType4 type : {QuantType4::kNf4, QuantType4::kFp4}) {
    const double g = max_gap(codebook4(type).code, 16);
    std::vector<float> x = normal_values(64 * 700, 1.0f, 4);
    for (size_t i = 0; i < x.size(); i += 64 * 37) x[i] *= 40.0f;  // spread the absmax values
    const QuantState4 s = quantize_4bit(tensor_of(x, {700, 64}, at::kFloat), type, 64, true);
    const QuantState4 plain = quantize_4bit(tensor_of(x, {700, 64}, at::kFloat), type, 64, false);
    const std::vector<float> back = floats_of(dequantize_4bit(s));
    const std::vector<float> am = values_of<float>(plain.absmax);
    const std::vector<float> am2 = values_of<float>(s.nested->absmax2);
    const double offset = s.nested->offset;
    for (size_t i = 0; i < x.size(); ++i) {
      const size_t b = i / 64;
      const double am_err = am2[b / 256] * (g8 / 2 + 1.0 / 65535) + std::ldexp(std::abs(am[b]) + std::abs(offset), -22);
      ASSERT_LE(std::abs(double(back[i]) - double(x[i])), am[b] * (g / 2 + std::ldexp(1.0, -21)) + am_err)
          << to_string(type) << " index " << i;
    }
  }
}

TEST(TensorApi4bit, AbsmaxBelowTheClampEncodesZero) {
  // bitsandbytes divides by max(absmax, 1e-38): values around 1e-40 scale to ~0.01 and take the
  // code of 0.0, so the error is |x| itself (at most absmax), not absmax * g / 2.
  const std::vector<float> x = {1e-40f, -2e-40f, 3e-40f, 0.0f};
  const QuantState4 s = quantize_4bit(tensor_of(x, {4}, at::kFloat), QuantType4::kNf4, 64);
  EXPECT_EQ(values_of<float>(s.absmax), (std::vector<float>{1e-38f}));  // short block: the clamp
  for (float f : floats_of(dequantize_4bit(s))) EXPECT_EQ(f, 0.0f);
}

// ---- 8-bit -----------------------------------------------------------------------------------

// The double-quantization goldens are bitsandbytes' quantize_blockwise of absmax - offset (its
// compiled CPU library, blocksize 256): the tensor API must give the same codes and scales.
TEST(TensorApi8bit, CompiledLibrarySearchMatchesBitsandbytes) {
  for (const char* name : {"normal_4096.nf4.b64.safetensors", "heavy_tail_8192.fp4.b64.safetensors",
                          "odd_777.nf4.b64.safetensors"}) {
    const StFile g = read_safetensors((qlc::testing::goldens_dir() / name).string());
    std::vector<float> centred = values_of<float>(tensor_of(g.at("absmax"), at::kFloat));
    const float offset = g.at("dq.offset").as<float>()[0];
    for (float& v : centred) v = v - offset;
    const QuantState8 s = quantize_8bit_blockwise(tensor_of(centred, {int64_t(centred.size())}, at::kFloat), 256);
    EXPECT_EQ(bytes_of(s.q), g.at("dq.qabsmax").data) << name;
    EXPECT_EQ(bytes_of(s.absmax), g.at("dq.absmax2").data) << name;
  }
}

// Nearest search: |x - code * absmax| <= absmax * g8 / 2 (+ 2^-21 absmax, as for 4-bit); the
// library search picks the code nearest to a grid point within 1/65535 of the scaled value.
TEST(TensorApi8bit, RoundTripErrorWithinHalfTheLargestGap) {
  for (bool is_signed : {true, false}) {
    const double g8 = max_gap(dynamic_map(is_signed).code, 256);
    std::vector<float> x = normal_values(5000, 3.0f, 5);
    if (!is_signed)
      for (float& v : x) v = std::abs(v);
    for (Search8 search : {Search8::kNearest, Search8::kBnbCpuLibrary}) {
      const QuantState8 s = quantize_8bit_blockwise(tensor_of(x, {50, 100}, at::kFloat), 256, is_signed, search);
      EXPECT_EQ(s.q.sizes().vec(), (std::vector<int64_t>{50, 100}));
      const std::vector<float> back = floats_of(dequantize_8bit_blockwise(s));
      const std::vector<float> am = values_of<float>(s.absmax);
      const double grid = search == Search8::kBnbCpuLibrary ? 1.0 / 65535 : 0.0;
      for (size_t i = 0; i < x.size(); ++i)
        ASSERT_LE(std::abs(double(back[i]) - double(x[i])), am[i / 256] * (g8 / 2 + grid + std::ldexp(1.0, -21)))
            << "signed " << is_signed << " index " << i;
    }
  }
}

TEST(TensorApi8bit, LayoutsDtypesAndEmpty) {
  const at::Tensor base = tensor_of(normal_values(40 * 30, 1.0f, 6), {40, 30}, at::kFloat);
  const QuantState8 a = quantize_8bit_blockwise(base.t(), 64);
  const QuantState8 b = quantize_8bit_blockwise(base.t().contiguous(), 64);
  EXPECT_EQ(bytes_of(a.q), bytes_of(b.q));
  EXPECT_EQ(bytes_of(a.absmax), bytes_of(b.absmax));
  for (at::ScalarType dtype : {at::kHalf, at::kBFloat16}) {
    const QuantState8 s = quantize_8bit_blockwise(base.to(dtype), 64);
    EXPECT_EQ(dequantize_8bit_blockwise(s).scalar_type(), dtype);
    EXPECT_EQ(bytes_of(dequantize_8bit_blockwise(s, dtype)),
              bytes_of(dequantize_8bit_blockwise(s, at::kFloat).to(dtype)));
  }
  const QuantState8 e = quantize_8bit_blockwise(at::empty({0, 3}, at::kFloat), 64);
  EXPECT_EQ(e.absmax.numel(), 0);
  EXPECT_EQ(dequantize_8bit_blockwise(e).sizes().vec(), (std::vector<int64_t>{0, 3}));
}

}  // namespace
}  // namespace qlc::kernels
