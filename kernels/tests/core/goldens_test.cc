// bitsandbytes' own outputs (kernels/tests/goldens/bnb-4bit, see its README) must be reproduced
// bit for bit: code books, dynamic maps, 4-bit quantize / dequantize and double quantization.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <regex>
#include <vector>

#include "qlc/kernels/blockwise_4bit.h"
#include "qlc/kernels/blockwise_8bit.h"
#include "qlc/kernels/double_quant.h"
#include "qlc/kernels/safetensors.h"
#include "support/test_paths.h"

namespace qlc::kernels {
namespace {

std::vector<uint32_t> bits(const float* v, int64_t n) {
  std::vector<uint32_t> out(static_cast<size_t>(n));
  std::memcpy(out.data(), v, static_cast<size_t>(n) * 4);
  return out;
}
std::vector<uint32_t> bits(const StTensor& t) { return bits(t.as<float>(), t.numel()); }
std::vector<uint8_t> bytes(const StTensor& t) { return t.data; }

// Bits of dequantized values with -0.0 read as +0.0. bitsandbytes' own dequantizers disagree on the
// sign of FP4 pattern 8 (sign bit on zero): its PyTorch and AVX-512 paths give +0.0, its scalar and
// AVX2 CPU kernels -0.0, and the golden files hold both (the odd_777 and normal_tail_1000 files were
// dequantized by the scalar kernel). The values are equal; only that sign is left out of the check.
std::vector<uint32_t> bits_zero_unsigned(const float* v, int64_t n) {
  std::vector<uint32_t> out = bits(v, n);
  for (uint32_t& u : out)
    if (u == 0x80000000u) u = 0;
  return out;
}
std::vector<uint32_t> bits_zero_unsigned(const StTensor& t) {
  return bits_zero_unsigned(t.as<float>(), t.numel());
}

StFile golden(const std::string& name) {
  return read_safetensors((qlc::testing::goldens_dir() / name).string());
}

TEST(Goldens, CodebooksMatchBitsandbytes) {
  for (QuantType4 type : {QuantType4::kNf4, QuantType4::kFp4}) {
    const StTensor code = golden("code_" + to_string(type) + ".safetensors").at("code");
    ASSERT_EQ(code.numel(), 16);
    for (int i = 0; i < 16; ++i) {
      // The goldens hold the table bitsandbytes quantizes with (+0.0 at FP4 pattern 8); our
      // dequantization table carries the sign bit there, so compare values, not bits, for zeros.
      EXPECT_EQ(codebook4(type).code[i], code.as<float>()[i]) << to_string(type) << " code " << i;
    }
  }
}

TEST(Goldens, DynamicMapsMatchBitsandbytes) {
  for (bool is_signed : {true, false}) {
    const StTensor code =
        golden(std::string("dynamic_map_") + (is_signed ? "signed" : "unsigned") + ".safetensors").at("code");
    ASSERT_EQ(code.numel(), 256);
    EXPECT_EQ(bits(dynamic_map(is_signed).code, 256), bits(code)) << (is_signed ? "signed" : "unsigned");
  }
}

std::vector<std::string> case_files() {
  std::vector<std::string> names;
  const std::regex pattern(R"(.*\.(nf4|fp4)\.b\d+\.safetensors)");
  for (const auto& entry : std::filesystem::directory_iterator(qlc::testing::goldens_dir())) {
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, pattern)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

class GoldenCase : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenCase, QuantizeDequantizeAndDoubleQuantBitForBit) {
  const StFile g = golden(GetParam());
  const QuantType4 type = quant_type4_from_string(g.metadata.at("quant_type"));
  const int64_t blocksize = std::stoll(g.metadata.at("blocksize"));
  const StTensor& input = g.at("input");
  const int64_t n = input.numel();
  const int64_t blocks = num_blocks(n, blocksize);

  std::vector<uint8_t> packed(static_cast<size_t>(packed_bytes_4bit(n)));
  std::vector<float> absmax(static_cast<size_t>(blocks));
  quantize_4bit_reference(input.as<float>(), n, blocksize, type, packed.data(), absmax.data());
  EXPECT_EQ(packed, bytes(g.at("packed")));
  EXPECT_EQ(bits(absmax.data(), blocks), bits(g.at("absmax")));

  std::vector<float> dequant(static_cast<size_t>(n));
  dequantize_4bit_reference(g.at("packed").as<uint8_t>(), g.at("absmax").as<float>(), n, blocksize,
                            type, dequant.data());
  EXPECT_EQ(bits(dequant.data(), n), bits_zero_unsigned(g.at("dequant")));

  // Double quantization: the offset (torch's fp32 mean), then the 8-bit scales.
  const float offset = torch_cpu_mean(g.at("absmax").as<float>(), blocks, kTorchMeanLanes);
  EXPECT_EQ(bits(&offset, 1), bits(g.at("dq.offset")));
  const float golden_offset = g.at("dq.offset").as<float>()[0];
  std::vector<uint8_t> qabsmax(static_cast<size_t>(blocks));
  std::vector<float> absmax2(static_cast<size_t>(num_blocks(blocks, kDoubleQuantBlocksize)));
  double_quantize_reference(g.at("absmax").as<float>(), blocks, golden_offset, qabsmax.data(),
                            absmax2.data());
  EXPECT_EQ(qabsmax, bytes(g.at("dq.qabsmax")));
  EXPECT_EQ(bits(absmax2.data(), static_cast<int64_t>(absmax2.size())), bits(g.at("dq.absmax2")));

  std::vector<float> restored(static_cast<size_t>(blocks));
  restore_absmax_reference(g.at("dq.qabsmax").as<uint8_t>(), g.at("dq.absmax2").as<float>(),
                           golden_offset, blocks, restored.data());
  EXPECT_EQ(bits(restored.data(), blocks), bits(g.at("dq.absmax_restored")));

  dequantize_4bit_reference(g.at("packed").as<uint8_t>(), g.at("dq.absmax_restored").as<float>(), n,
                            blocksize, type, dequant.data());
  EXPECT_EQ(bits(dequant.data(), n), bits_zero_unsigned(g.at("dq.dequant")));
}

INSTANTIATE_TEST_SUITE_P(AllFiles, GoldenCase, ::testing::ValuesIn(case_files()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param.substr(0, info.param.size() - 12);
                           for (char& c : name)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

}  // namespace
}  // namespace qlc::kernels
