// Differential test against bitsandbytes' CPU backend on fresh random inputs (blockwise_peer.py):
// 4-bit quantize / dequantize, double quantization and 8-bit blockwise, in fp32, bf16 and fp16.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "peer/peer_files.h"
#include "qlc/kernels/blockwise_4bit.h"
#include "qlc/kernels/blockwise_8bit.h"
#include "qlc/kernels/double_quant.h"
#include "qlc/kernels/safetensors.h"

namespace qlc::kernels {
namespace {

// Raw bits of n values of 2 or 4 bytes; -0.0 read as +0.0 when `zero_sign_free` (FP4 pattern 8:
// bitsandbytes' AVX2 CPU kernel gives -0.0, its PyTorch path and we give +0.0; equal values).
std::vector<uint32_t> value_bits(const uint8_t* data, int64_t n, int itemsize, bool zero_sign_free) {
  std::vector<uint32_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u = 0;
    std::memcpy(&u, data + i * itemsize, static_cast<size_t>(itemsize));
    const uint32_t sign = itemsize == 4 ? 0x80000000u : 0x8000u;
    if (zero_sign_free && u == sign) u = 0;
    out[static_cast<size_t>(i)] = u;
  }
  return out;
}

template <class T>
std::vector<uint32_t> value_bits(const std::vector<T>& v, bool zero_sign_free) {
  return value_bits(reinterpret_cast<const uint8_t*>(v.data()), static_cast<int64_t>(v.size()),
                    sizeof(T), zero_sign_free);
}
std::vector<uint32_t> value_bits(const StTensor& t, bool zero_sign_free) {
  return value_bits(t.data.data(), t.numel(), static_cast<int>(safetensors_itemsize(t.dtype)),
                    zero_sign_free);
}

template <class T>
void check_4bit_case(const StFile& f) {
  const QuantType4 type = quant_type4_from_string(f.metadata.at("quant_type"));
  const int64_t blocksize = std::stoll(f.metadata.at("blocksize"));
  const StTensor& input = f.at("input");
  const int64_t n = input.numel();
  const int64_t blocks = num_blocks(n, blocksize);
  const bool fp4 = type == QuantType4::kFp4;

  std::vector<uint8_t> packed(static_cast<size_t>(packed_bytes_4bit(n)));
  std::vector<float> absmax(static_cast<size_t>(blocks));
  quantize_4bit_reference(input.as<T>(), n, blocksize, type, packed.data(), absmax.data());
  EXPECT_EQ(packed, f.at("packed").data) << "packed codes";
  EXPECT_EQ(value_bits(absmax, false), value_bits(f.at("absmax"), false)) << "absmax";

  std::vector<T> dequant(static_cast<size_t>(n));
  dequantize_4bit_reference(f.at("packed").as<uint8_t>(), f.at("absmax").as<float>(), n, blocksize,
                            type, dequant.data());
  EXPECT_EQ(value_bits(dequant, fp4), value_bits(f.at("dequant"), fp4)) << "dequantized values";

  const float offset = torch_cpu_mean(f.at("absmax").as<float>(), blocks, kTorchMeanLanes);
  EXPECT_EQ(value_bits(std::vector<float>{offset}, false), value_bits(f.at("dq.offset"), false))
      << "double-quant offset";
  std::vector<uint8_t> qabsmax(static_cast<size_t>(blocks));
  std::vector<float> absmax2(static_cast<size_t>(num_blocks(blocks, kDoubleQuantBlocksize)));
  const DynamicMap8 map = make_dynamic_map(f.at("dq.code").as<float>());
  double_quantize_reference(f.at("absmax").as<float>(), blocks, f.at("dq.offset").as<float>()[0],
                            qabsmax.data(), absmax2.data(), map);
  EXPECT_EQ(qabsmax, f.at("dq.qabsmax").data) << "double-quant codes";
  EXPECT_EQ(value_bits(absmax2, false), value_bits(f.at("dq.absmax2"), false)) << "double-quant absmax";

  std::vector<float> restored(static_cast<size_t>(blocks));
  restore_absmax_reference(f.at("dq.qabsmax").as<uint8_t>(), f.at("dq.absmax2").as<float>(),
                           f.at("dq.offset").as<float>()[0], blocks, restored.data(), map);
  dequantize_4bit_reference(f.at("packed").as<uint8_t>(), restored.data(), n, blocksize, type,
                            dequant.data());
  EXPECT_EQ(value_bits(dequant, fp4), value_bits(f.at("dq.dequant"), fp4)) << "double-quant dequantized values";
}

template <class T>
void check_8bit_case(const StFile& f) {
  const int64_t blocksize = std::stoll(f.metadata.at("blocksize"));
  const StTensor& input = f.at("input");
  const int64_t n = input.numel();
  std::vector<uint8_t> q(static_cast<size_t>(n));
  std::vector<float> absmax(static_cast<size_t>(num_blocks(n, blocksize)));
  const DynamicMap8 map = make_dynamic_map(f.at("code8").as<float>());
  quantize_8bit_reference(input.as<T>(), n, blocksize, map, Search8::kBnbCpuLibrary, q.data(),
                          absmax.data());
  EXPECT_EQ(q, f.at("q8").data) << "8-bit codes";
  EXPECT_EQ(value_bits(absmax, false), value_bits(f.at("absmax8"), false)) << "8-bit absmax";
  std::vector<T> dequant(static_cast<size_t>(n));
  dequantize_8bit_reference(f.at("q8").as<uint8_t>(), f.at("absmax8").as<float>(), n, blocksize,
                            map, dequant.data());
  EXPECT_EQ(value_bits(dequant, false), value_bits(f.at("dequant8"), false)) << "8-bit dequantized values";
}

template <template <class> class Check>
void for_each_dtype(const StFile& f) {
  const std::string& dtype = f.metadata.at("dtype");
  if (dtype == "fp32") {
    Check<float>::run(f);
  } else if (dtype == "bf16") {
    Check<Bf16>::run(f);
  } else if (dtype == "fp16") {
    Check<Fp16>::run(f);
  } else {
    FAIL() << "unknown dtype " << dtype;
  }
}
template <class T>
struct Check4 {
  static void run(const StFile& f) { check_4bit_case<T>(f); }
};
template <class T>
struct Check8 {
  static void run(const StFile& f) { check_8bit_case<T>(f); }
};

TEST(BitsandbytesPeer, FourBitAndDoubleQuantMatchOnRandomInputs) {
  for (const std::string& path : qlc::testing::peer_files("blockwise_4bit_")) {
    SCOPED_TRACE(path);
    for_each_dtype<Check4>(read_safetensors(path));
  }
}

TEST(BitsandbytesPeer, EightBitBlockwiseMatchesOnRandomInputs) {
  for (const std::string& path : qlc::testing::peer_files("blockwise_8bit_")) {
    SCOPED_TRACE(path);
    for_each_dtype<Check8>(read_safetensors(path));
  }
}

}  // namespace
}  // namespace qlc::kernels
