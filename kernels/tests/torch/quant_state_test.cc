// QuantState4 <-> safetensors under transformers' keys: the packed JSON byte for byte as
// bitsandbytes writes it, lossless round trips for every format and shape, and a clear error for
// each corrupt or inconsistent file.
#include <gtest/gtest.h>

#include <ATen/ops/zeros.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <vector>

#include "qlc/kernels/dynamic_map.h"
#include "qlc/kernels/tensor_api.h"
#include "tensor_test_support.h"

namespace qlc::kernels {
namespace {

using testing::bytes_of;
using testing::expect_error;
using testing::normal_values;
using testing::tensor_of;

std::string temp_path(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / ("qlc_quant_state_" + name)).string();
}

QuantState4 sample_state(QuantType4 type, bool nested, std::vector<int64_t> shape = {7, 9},
                         at::ScalarType dtype = at::kBFloat16, int64_t blocksize = 32) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return quantize_4bit(tensor_of(normal_values(n, 2.0f, 1), shape, at::kFloat).to(dtype), type, blocksize, nested);
}

std::string json_of(const StFile& file, const std::string& key) {
  const StTensor& t = file.at(key);
  return std::string(t.data.begin(), t.data.end());
}

// bitsandbytes 0.50.2, QuantState.as_dict(packed=True) for a bf16 [7, 9] weight, blocksize 32:
// the packed JSON, printed by bitsandbytes itself (nested_offset set to the same value here).
TEST(QuantStateJson, ByteForByteAsBitsandbytes) {
  QuantState4 s = sample_state(QuantType4::kNf4, false);
  EXPECT_EQ(quant_state_json(s), R"({"quant_type": "nf4", "blocksize": 32, "dtype": "bfloat16", "shape": [7, 9]})");
  s = sample_state(QuantType4::kNf4, true);
  s.nested->offset = 2.7578125f;
  EXPECT_EQ(quant_state_json(s),
            R"({"quant_type": "nf4", "blocksize": 32, "dtype": "bfloat16", "shape": [7, 9], )"
            R"("nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 2.7578125})");
}

// json.dumps(torch.tensor(v, dtype=torch.float32).item()) for each v, printed by Python.
TEST(QuantStateJson, OffsetsWrittenAsPythonReprOfTheFloat) {
  const std::vector<std::pair<float, std::string>> cases = {
      {1e-5f, "9.999999747378752e-06"}, {1e15f, "999999986991104.0"},
      {1.2345678e15f, "1234567813922816.0"}, {0.1f, "0.10000000149011612"},
      {3.0e38f, "3.0000000054977558e+38"}, {std::numeric_limits<float>::quiet_NaN(), "NaN"}};
  QuantState4 s = sample_state(QuantType4::kFp4, true, {3}, at::kFloat, 64);
  for (const auto& [value, text] : cases) {
    s.nested->offset = value;
    const std::string json = quant_state_json(s);
    EXPECT_EQ(json.substr(json.find("\"nested_offset\": ") + 17), text + "}");
  }
}

TEST(QuantStateFile, KeysDtypesAndShapesAsTransformersWritesThem) {
  for (bool nested : {false, true}) {
    const QuantState4 s = sample_state(QuantType4::kFp4, nested);
    const std::string path = temp_path(std::string("keys_") + (nested ? "dq" : "plain"));
    save_quant_state(path, s, "model.layers.0.mlp.up_proj.weight");
    const StFile f = read_safetensors(path);
    const std::string w = "model.layers.0.mlp.up_proj.weight";
    std::set<std::string> keys;
    for (const auto& kv : f.tensors) keys.insert(kv.first);
    std::set<std::string> expected = {w, w + ".absmax", w + ".quant_map", w + ".quant_state.bitsandbytes__fp4"};
    if (nested) expected.insert({w + ".nested_absmax", w + ".nested_quant_map"});
    EXPECT_EQ(keys, expected);
    EXPECT_EQ(f.at(w).dtype, "U8");
    EXPECT_EQ(f.at(w).shape, (std::vector<int64_t>{32, 1}));  // (63 + 1) / 2 bytes, Params4bit's shape
    EXPECT_EQ(f.at(w + ".absmax").dtype, nested ? "U8" : "F32");
    EXPECT_EQ(f.at(w + ".absmax").shape, (std::vector<int64_t>{2}));
    EXPECT_EQ(f.at(w + ".quant_map").shape, (std::vector<int64_t>{16}));
    EXPECT_EQ(json_of(f, w + ".quant_state.bitsandbytes__fp4"), quant_state_json(s));
    if (nested) {
      EXPECT_EQ(f.at(w + ".nested_absmax").dtype, "F32");
      EXPECT_EQ(f.at(w + ".nested_quant_map").shape, (std::vector<int64_t>{256}));
    }
    EXPECT_EQ(f.metadata.at("format"), "pt");
    std::remove(path.c_str());
  }
}

void expect_same_state(const QuantState4& a, const QuantState4& b) {
  EXPECT_EQ(a.quant_type, b.quant_type);
  EXPECT_EQ(a.blocksize, b.blocksize);
  EXPECT_EQ(a.dtype, b.dtype);
  EXPECT_EQ(a.shape, b.shape);
  EXPECT_EQ(bytes_of(a.packed), bytes_of(b.packed));
  EXPECT_EQ(bytes_of(a.absmax), bytes_of(b.absmax));
  EXPECT_EQ(bytes_of(a.code), bytes_of(b.code));
  ASSERT_EQ(a.nested.has_value(), b.nested.has_value());
  if (a.nested) {
    EXPECT_EQ(bytes_of(a.nested->absmax2), bytes_of(b.nested->absmax2));
    EXPECT_EQ(bytes_of(a.nested->code), bytes_of(b.nested->code));
    EXPECT_EQ(std::memcmp(&a.nested->offset, &b.nested->offset, 4), 0);  // NaN included
  }
}

TEST(QuantStateFile, RoundTripIsLossless) {
  const std::vector<std::vector<int64_t>> shapes = {{7, 9}, {1}, {0, 4}, {3, 5, 4}, {4096}};
  for (QuantType4 type : {QuantType4::kNf4, QuantType4::kFp4})
    for (bool nested : {false, true})
      for (at::ScalarType dtype : {at::kFloat, at::kHalf, at::kBFloat16})
        for (const auto& shape : shapes) {
          const QuantState4 s = sample_state(type, nested, shape, dtype, 64);
          const std::string path = temp_path("roundtrip");
          save_quant_state(path, s);
          const QuantState4 back = load_quant_state(path);
          expect_same_state(s, back);
          EXPECT_EQ(bytes_of(dequantize_4bit(back)), bytes_of(dequantize_4bit(s)));
          std::remove(path.c_str());
        }
}

TEST(QuantStateFile, ManyWeightsInOneFile) {
  StFile f;
  const QuantState4 a = sample_state(QuantType4::kNf4, true);
  const QuantState4 b = sample_state(QuantType4::kFp4, false, {16, 8}, at::kHalf, 64);
  add_quant_state(f, "layers.0.q.weight", a);
  add_quant_state(f, "layers.0.k.weight", b);
  const std::string path = temp_path("many");
  write_safetensors(path, f);
  const StFile back = read_safetensors(path);
  expect_same_state(quant_state_from_safetensors(back, "layers.0.q.weight"), a);
  expect_same_state(quant_state_from_safetensors(back, "layers.0.k.weight"), b);
  expect_error<SafetensorsError>([&] { quant_state_from_safetensors(back, "layers.1.q.weight"); },
                                 {path, "4-bit weight 'layers.1.q.weight': no such tensor in the file"});
  std::remove(path.c_str());
}

// A packed weight saved with another quant_storage (FSDP) is the same bytes in another dtype.
TEST(QuantStateFile, PackedStorageDtypeIsReadAsBytes) {
  StFile f;
  const QuantState4 s = sample_state(QuantType4::kNf4, false, {8, 8}, at::kFloat, 64);
  add_quant_state(f, "weight", s);
  StTensor& packed = f.tensors.at("weight");
  packed.dtype = "BF16";
  packed.shape = {16, 1};  // 32 bytes as 16 bf16 values
  const QuantState4 back = quant_state_from_safetensors(f, "weight");
  EXPECT_EQ(bytes_of(back.packed), bytes_of(s.packed));
  EXPECT_EQ(back.packed.sizes().vec(), (std::vector<int64_t>{32, 1}));
}

// bitsandbytes restores the absmax with the nested table stored in the file, whose last bits depend
// on the LibTorch that built it: a table one ulp off ours is accepted and used.
TEST(QuantStateFile, NestedTableFromTheFileIsUsedToRestore) {
  // Block 0 dominates the absmax values, so its centred scale is absmax2 itself (code 1.0) and a
  // one-ulp change of that code survives adding the much smaller offset.
  std::vector<float> x = normal_values(64 * 8, 1.0f, 3);
  for (int i = 0; i < 64; ++i) x[i] *= 100.0f;
  const QuantState4 s = quantize_4bit(tensor_of(x, {64 * 8}, at::kFloat), QuantType4::kNf4, 64, true);
  StFile f;
  add_quant_state(f, "weight", s);
  const uint8_t q0 = f.at("weight.absmax").data[0];
  float* table = reinterpret_cast<float*>(f.tensors.at("weight.nested_quant_map").data.data());
  table[q0] = std::nextafter(table[q0], 2.0f);
  const QuantState4 back = quant_state_from_safetensors(f, "weight");
  const float absmax2 = back.nested->absmax2.data_ptr<float>()[0];
  const float scaled = table[q0] * absmax2;
  const float restored = scaled + back.nested->offset;
  const uint8_t nibble = static_cast<uint8_t>(f.at("weight").data[0] >> 4);
  EXPECT_EQ(dequantize_4bit(back).data_ptr<float>()[0], codebook4(QuantType4::kNf4).code[nibble] * restored);
  EXPECT_NE(restored, [&] {  // the table we quantized with restores a different absmax
    const float v = dynamic_map(true).code[q0] * absmax2;
    return v + back.nested->offset;
  }());
}

// Each way a file can be wrong, one clear error naming the file, the weight and the problem.
class CorruptFile : public ::testing::Test {
 protected:
  void SetUp() override {
    add_quant_state(plain_, "weight", sample_state(QuantType4::kNf4, false));
    add_quant_state(nested_, "weight", sample_state(QuantType4::kNf4, true));
    plain_.source = "plain.safetensors";
    nested_.source = "nested.safetensors";
  }
  StFile plain_, nested_;
};

TEST_F(CorruptFile, MissingTensors) {
  StFile f = plain_;
  f.tensors.erase("weight.absmax");
  expect_error<SafetensorsError>([&] { quant_state_from_safetensors(f, "weight"); },
                                 {"plain.safetensors: 4-bit weight 'weight': missing tensor 'weight.absmax'"});
  f = plain_;
  f.tensors.erase("weight.quant_state.bitsandbytes__nf4");
  expect_error<SafetensorsError>([&] { quant_state_from_safetensors(f, "weight"); },
                                 {"missing 'weight.quant_state.bitsandbytes__nf4' (or fp4): not a bitsandbytes 4-bit weight"});
  f = nested_;
  f.tensors.erase("weight.nested_absmax");
  expect_error<SafetensorsError>([&] { quant_state_from_safetensors(f, "weight"); },
                                 {"names nested_* entries but 'weight.nested_absmax' is missing"});
}

TEST_F(CorruptFile, InconsistentSizesAndDtypes) {
  StFile f = plain_;
  f.tensors.at("weight").data.resize(3);
  f.tensors.at("weight").shape = {3, 1};
  expect_error<SafetensorsError>([&] { quant_state_from_safetensors(f, "weight"); },
                                 {"'weight' holds 3 bytes; shape [7, 9] needs 32"});
  f = plain_;
  f.tensors.at("weight.absmax") = make_st_tensor<float>("F32", {1}, std::vector<float>{1.0f}.data(), 1);
  expect_error<SafetensorsError>([&] { quant_state_from_safetensors(f, "weight"); },
                                 {"'weight.absmax' has 1 elements, expected 2"});
  f = nested_;
  f.tensors.at("weight.absmax").dtype = "I8";
  expect_error<SafetensorsError>([&] { quant_state_from_safetensors(f, "weight"); },
                                 {"'weight.absmax' has dtype I8, expected U8"});
}

TEST_F(CorruptFile, WrongTablesAndValues) {
  StFile f = plain_;
  reinterpret_cast<float*>(f.tensors.at("weight.quant_map").data.data())[3] = 0.25f;
  expect_error<SafetensorsError>([&] { quant_state_from_safetensors(f, "weight"); },
                                 {"'weight.quant_map' is not bitsandbytes' nf4 code book (entry 3 is 0.25, expected -0.394917488 within 1e-6 relative)"});
  f = nested_;
  reinterpret_cast<float*>(f.tensors.at("weight.nested_quant_map").data.data())[0] = -1.0f;
  expect_error<SafetensorsError>([&] { quant_state_from_safetensors(f, "weight"); },
                                 {"'weight.nested_quant_map' is not bitsandbytes' signed dynamic map (entry 0"});
  f = plain_;
  reinterpret_cast<float*>(f.tensors.at("weight.absmax").data.data())[1] = std::numeric_limits<float>::infinity();
  expect_error<SafetensorsError>([&] { quant_state_from_safetensors(f, "weight"); },
                                 {"'weight.absmax' holds a NaN/Inf at index 1"});
}

TEST_F(CorruptFile, BadPackedJson) {
  auto with_json = [&](const StFile& base, const std::string& key, const std::string& json) {
    StFile f = base;
    f.tensors.erase("weight.quant_state.bitsandbytes__nf4");
    f.tensors[key] = make_st_tensor("U8", {int64_t(json.size())}, json.data(), int64_t(json.size()));
    return f;
  };
  const std::string key = "weight.quant_state.bitsandbytes__nf4";
  expect_error<SafetensorsError>([&] { quant_state_from_safetensors(with_json(plain_, key, "{\"quant_type\": \"nf4\", "), "weight"); },
                                 {"'weight.quant_state.bitsandbytes__nf4': packed quant_state is not valid JSON"});
  expect_error<SafetensorsError>(
      [&] { quant_state_from_safetensors(with_json(plain_, key, R"({"quant_type": "nf4", "blocksize": 32, "dtype": "bfloat16"})"), "weight"); },
      {"packed quant_state has no \"shape\""});
  expect_error<SafetensorsError>(
      [&] { quant_state_from_safetensors(with_json(plain_, key, R"({"quant_type": "fp4", "blocksize": 32, "dtype": "bfloat16", "shape": [7, 9]})"), "weight"); },
      {"says quant_type \"fp4\""});
  expect_error<SafetensorsError>(
      [&] { quant_state_from_safetensors(with_json(plain_, key, R"({"quant_type": "nf4", "blocksize": 32, "dtype": "float64", "shape": [7, 9]})"), "weight"); },
      {"dtype \"float64\" is not float32, float16 or bfloat16"});
  expect_error<SafetensorsError>(
      [&] { quant_state_from_safetensors(with_json(plain_, key, R"({"quant_type": "nf4", "blocksize": 48, "dtype": "float32", "shape": [7, 9]})"), "weight"); },
      {"blocksize 48 is not a power of two from 32 to 4096"});
  expect_error<SafetensorsError>(
      [&] { quant_state_from_safetensors(with_json(nested_, key, R"({"quant_type": "nf4", "blocksize": 32, "dtype": "bfloat16", "shape": [7, 9], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": NaN})"), "weight"); },
      {"nested_offset is not finite"});
  StFile two = plain_;
  two.tensors["weight.quant_state.bitsandbytes__fp4"] = two.tensors.at(key);
  expect_error<SafetensorsError>([&] { quant_state_from_safetensors(two, "weight"); }, {"two packed quant states"});
}

TEST(QuantStateFile, TruncatedAndGarbageFiles) {
  const std::string path = temp_path("truncated");
  save_quant_state(path, sample_state(QuantType4::kNf4, true));
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size - 40);
  expect_error<SafetensorsError>([&] { load_quant_state(path); }, {path, "truncated"});
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << "not a safetensors file at all";
  }
  expect_error<SafetensorsError>([&] { load_quant_state(path); }, {path});
  std::remove(path.c_str());
  expect_error<SafetensorsError>([&] { load_quant_state(path); }, {path, "cannot open"});
}

TEST(QuantStateFile, SavingAnInconsistentStateIsRefused) {
  QuantState4 s = sample_state(QuantType4::kNf4, false);
  s.code = at::zeros({15}, at::kFloat);
  expect_error<KernelInputError>([&] { save_quant_state(temp_path("bad"), s); },
                                 {"add_quant_state: state for 'weight': code has 15 elements, expected 16"});
}

}  // namespace
}  // namespace qlc::kernels
