// 4-bit checkpoints cross-loaded with bitsandbytes, both ways:
//  - bitsandbytes writes (quant_state_peer.py: Linear4bit's state_dict, the keys transformers
//    saves); we load them, dequantize to bitsandbytes' own values, read its packed JSON back byte
//    for byte, and quantize its inputs to the same bytes;
//  - we write; quant_state_verify.py, run here as a subprocess in the project's venv, loads our file
//    with Params4bit.from_prequantized (QuantState.from_dict) and requires our dequantized values.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "qlc/kernels/tensor_api.h"
#include "torch/tensor_test_support.h"

namespace qlc::kernels {
namespace {

using testing::bytes_of;
using testing::normal_values;
using testing::tensor_of;

std::filesystem::path peer_dir() {
  const char* dir = std::getenv("QLC_PEER_DIR");
  if (dir == nullptr)
    throw std::runtime_error("QLC_PEER_DIR is not set: run through ctest, whose peer_vectors fixture writes the files");
  return dir;
}

// Bit patterns with negative zero read as positive zero, for fp32 and 16-bit tensors alike:
// bitsandbytes' CPU kernels give FP4's pattern 8 as -0.0, we give +0.0 (equal values).
std::vector<uint8_t> bytes_zero_unsigned(const at::Tensor& t) {
  std::vector<uint8_t> b = bytes_of(t);
  const size_t width = t.element_size();
  for (size_t i = 0; i + width <= b.size(); i += width) {
    bool negative_zero = b[i + width - 1] == 0x80;
    for (size_t j = 0; j + 1 < width; ++j) negative_zero = negative_zero && b[i + j] == 0;
    if (negative_zero) b[i + width - 1] = 0;
  }
  return b;
}

at::ScalarType dtype_of(const std::string& name) {
  return name == "fp16" ? at::kHalf : name == "bf16" ? at::kBFloat16 : at::kFloat;
}

TEST(QuantStatePeer, BitsandbytesCheckpointsLoadAndDequantizeIdentically) {
  const std::string path = (peer_dir() / "quant_state_peer.safetensors").string();
  const StFile file = read_safetensors(path);
  const nlohmann::json cases = nlohmann::json::parse(file.metadata.at("cases"));
  ASSERT_GE(cases.size(), 36u);
  for (const nlohmann::json& c : cases) {
    const std::string name = c.at("name"), case_name = c.at("case");
    SCOPED_TRACE(name + " " + c.dump());
    const QuantState4 state = quant_state_from_safetensors(file, name);
    EXPECT_EQ(to_string(state.quant_type), c.at("quant_type").get<std::string>());
    EXPECT_EQ(state.nested.has_value(), c.at("double_quant").get<bool>());
    EXPECT_EQ(state.dtype, dtype_of(c.at("dtype")));
    EXPECT_EQ(state.shape, c.at("shape").get<std::vector<int64_t>>());
    EXPECT_EQ(state.blocksize, c.at("blocksize").get<int64_t>());

    // bitsandbytes' reference path defines the format; its compiled CPU kernel must agree with us
    // too, except where bnb_reference.py documents that kernel's error.
    const at::Tensor reference = tensor_of(file.at(case_name + ".expected_reference"));
    const at::Tensor compiled = tensor_of(file.at(case_name + ".expected"));
    const at::Tensor ours = dequantize_4bit(state);
    ASSERT_EQ(ours.scalar_type(), reference.scalar_type());
    EXPECT_EQ(bytes_zero_unsigned(ours), bytes_zero_unsigned(reference));
    if (bytes_zero_unsigned(ours) != bytes_zero_unsigned(compiled)) {
      EXPECT_TRUE(c.at("compiled_known_wrong").get<bool>())
          << "bitsandbytes' compiled dequantization differs from ours outside its known error";
    }

    const StTensor& json = file.at(name + ".quant_state.bitsandbytes__" + c.at("quant_type").get<std::string>());
    EXPECT_EQ(quant_state_json(state), std::string(json.data.begin(), json.data.end()));

    const QuantState4 requantized =
        quantize_4bit(tensor_of(file.at(case_name + ".input")), state.quant_type, state.blocksize, state.nested.has_value());
    EXPECT_EQ(bytes_of(requantized.packed), file.at(name).data);
    EXPECT_EQ(bytes_of(requantized.absmax), file.at(name + ".absmax").data);
    if (state.nested) {
      EXPECT_EQ(bytes_of(requantized.nested->absmax2), file.at(name + ".nested_absmax").data);
      EXPECT_EQ(quant_state_json(requantized), quant_state_json(state));  // the offset, as text
    }
  }
}

struct RunResult {
  int exit_code = -1;
  std::string output;
};

RunResult run_verify(const std::string& checkpoint) {
  const std::string command = std::string("\"") + QLC_PYTHON_EXECUTABLE + "\" \"" + QLC_PEER_SCRIPTS_DIR +
                              "/quant_state_verify.py\" \"" + checkpoint + "\" 2>&1";
  RunResult r;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("cannot start: " + command);
  char buffer[4096];
  size_t got = 0;
  while ((got = fread(buffer, 1, sizeof buffer, pipe)) > 0) r.output.append(buffer, got);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Our checkpoint: every format and dtype, odd counts, a one-row weight, an empty weight (its
// double-quant offset is NaN, written as Python writes it) and a 3-D weight.
StFile our_checkpoint(int* count) {
  StFile file;
  file.metadata["format"] = "pt";
  nlohmann::json cases = nlohmann::json::array();
  const std::vector<std::pair<std::vector<int64_t>, int64_t>> shapes = {
      {{48, 96}, 64}, {{9, 7}, 64}, {{1, 2}, 64}, {{0, 4}, 64}, {{33, 40}, 128}, {{2, 3, 20}, 32}};
  int index = 0;
  for (QuantType4 type : {QuantType4::kNf4, QuantType4::kFp4})
    for (bool dq : {false, true})
      for (const char* dtype : {"fp32", "fp16", "bf16"})
        for (const auto& [shape, blocksize] : shapes) {
          int64_t n = 1;
          for (int64_t d : shape) n *= d;
          const at::Tensor w = tensor_of(normal_values(n, 0.05f, 100 + index), shape, at::kFloat).to(dtype_of(dtype));
          const QuantState4 state = quantize_4bit(w, type, blocksize, dq);
          const std::string case_name = "model.layers." + std::to_string(index);
          const std::string name = case_name + ".mlp.down_proj.weight";
          add_quant_state(file, name, state);
          const at::Tensor deq = dequantize_4bit(state);
          StTensor expected;
          expected.dtype = std::string(dtype) == "fp32" ? "F32" : std::string(dtype) == "fp16" ? "F16" : "BF16";
          expected.shape = shape;
          expected.data = bytes_of(deq);
          file.tensors[case_name + ".expected"] = expected;
          StTensor input = expected;
          input.data = bytes_of(w);
          file.tensors[case_name + ".input"] = input;
          cases.push_back({{"name", name}, {"case", case_name}, {"quant_type", to_string(type)},
                           {"double_quant", dq}, {"dtype", dtype}, {"shape", shape}, {"blocksize", blocksize}});
          ++index;
        }
  file.metadata["cases"] = cases.dump();
  *count = index;
  return file;
}

TEST(QuantStatePeer, OurCheckpointsLoadInBitsandbytes) {
  int count = 0;
  StFile file = our_checkpoint(&count);
  const std::string path = (peer_dir() / "ours_quant_state.safetensors").string();
  write_safetensors(path, file);
  const RunResult r = run_verify(path);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("quant_state_verify: OK " + std::to_string(count) + " weights"), std::string::npos) << r.output;

  // The verification can fail: one changed expected value must be caught.
  StTensor& expected = file.tensors.at("model.layers.0.expected");
  reinterpret_cast<float*>(expected.data.data())[5] += 1.0f;
  const std::string bad = (peer_dir() / "ours_quant_state_bad.safetensors").string();
  write_safetensors(bad, file);
  const RunResult rb = run_verify(bad);
  EXPECT_EQ(rb.exit_code, 1) << rb.output;
  EXPECT_NE(rb.output.find("model.layers.0.mlp.down_proj.weight: bitsandbytes' dequantization differs from ours"),
            std::string::npos)
      << rb.output;
}

}  // namespace
}  // namespace qlc::kernels
