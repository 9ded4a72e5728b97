// A case: one point of the matrix. Its id is stable and readable, doubles as a filter and as the
// argument that reproduces it (`qlora-compat run --filter ID`), e.g.
//   cpu/nf4-dq/param=bf16/compute=bf16/optim=adamw8bit
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace qlc::harness {

// How the base weights are loaded: 4-bit (NF4/FP4), LLM.int8, or not quantized (plain LoRA, the
// control group).
enum class WeightFormat { kNone, kNf4, kFp4, kInt8 };
// The one dtype vocabulary of the project.
enum class Dtype { kFp32, kFp16, kBf16 };
// AdamW with fp32 states, with states in the parameter dtype, with bitsandbytes-style 8-bit
// blockwise states, and the paged variant of the latter.
enum class OptimizerKind { kAdamWFp32, kAdamWParamDtype, kAdamW8bit, kPagedAdamW8bit };

std::string to_string(WeightFormat v);  // none nf4 fp4 int8
std::string to_string(Dtype v);         // fp32 fp16 bf16
std::string to_string(OptimizerKind v); // adamw-fp32 adamw-param adamw8bit paged-adamw8bit
// Parsers throw std::invalid_argument naming the bad value and listing the valid ones.
WeightFormat weight_format_from_string(const std::string& s);
Dtype dtype_from_string(const std::string& s);
OptimizerKind optimizer_from_string(const std::string& s);

// Every enumerator, in declaration order: for tables, loops over the whole matrix, and the valid
// lists in error messages.
inline constexpr std::array<WeightFormat, 4> kAllWeightFormats = {
    WeightFormat::kNone, WeightFormat::kNf4, WeightFormat::kFp4, WeightFormat::kInt8};
inline constexpr std::array<Dtype, 3> kAllDtypes = {Dtype::kFp32, Dtype::kFp16, Dtype::kBf16};
inline constexpr std::array<OptimizerKind, 4> kAllOptimizers = {
    OptimizerKind::kAdamWFp32, OptimizerKind::kAdamWParamDtype, OptimizerKind::kAdamW8bit,
    OptimizerKind::kPagedAdamW8bit};

// NF4 and FP4: the formats that double quantization (of their absmax) applies to.
bool is_4bit(WeightFormat v);

// "cpu", "cuda:N" (N a decimal index without leading zeros) or "auto" (not yet resolved).
bool is_valid_device(const std::string& device);

struct Case {
  std::string device = "cpu";  // "cpu" or "cuda:N" (resolved: never "auto" here, except in a
                               // Matrix not yet passed through resolve_device)
  WeightFormat weights = WeightFormat::kNf4;
  bool double_quant = false;   // meaningful for 4-bit only: ignored by id() (and so by ==) for
                               // none/int8; matrix expansion stores it as false there
  Dtype param_dtype = Dtype::kFp32;
  Dtype compute_dtype = Dtype::kFp32;
  OptimizerKind optimizer = OptimizerKind::kAdamWFp32;

  // "<device>/<weights>[-dq]/param=<dtype>/compute=<dtype>/optim=<optimizer>"; "-dq" only for
  // nf4/fp4 with double_quant.
  std::string id() const;
  // Inverse of id(); throws std::invalid_argument with the offending part (also for "-dq" on
  // none/int8, which id() never writes). Accepts device "auto" (ids of an unresolved matrix).
  static Case from_id(const std::string& id);
  // (axis, value) pairs in id order, e.g. {"weights","nf4"}, {"double_quant","true"}: used for
  // CTest labels and report columns.
  std::vector<std::pair<std::string, std::string>> axes() const;

  friend bool operator==(const Case& a, const Case& b) { return a.id() == b.id(); }
};

// Settings that apply to every case of a run (not part of the id).
struct RunSettings {
  std::string model = "tiny";  // model preset
  int steps = 8;               // timed training steps (after warm-up)
  int warmup_steps = 1;
  int lora_rank = 8;
  float lora_alpha = 16.0f;
  float lora_dropout = 0.05f;
  float learning_rate = 1e-3f;
  uint64_t seed = 1234;
};

}  // namespace qlc::harness
