// A case: one point of the matrix. Its id is stable and readable, doubles as a filter and as the
// argument that reproduces it (`qlora-compat run --filter ID`), e.g.
//   cpu/nf4-dq/param=bf16/compute=bf16/optim=adamw8bit/amp=fp16/adapter=peft/kbit=on/ckpt=reentrant/stack=current/model=tiny
//
// The id names every axis, in the order of case_axes(): the device and the weights (with "-dq" for
// double quantization) by position, the others as key=value. An id of the original five parts
// ("cpu/nf4-dq/param=bf16/compute=bf16/optim=adamw8bit", the 216-case core) still reads: the six
// later axes take their defaults (amp=none/adapter=model/kbit=off/ckpt=off/stack=current/
// model=tiny), which are exactly what such a case always ran; id() then writes the full form.
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
// Trainer's precision flag: none; fp16=True (autocast fp16 + torch.amp.GradScaler); bf16=True
// (autocast bf16, no scaler). Autocast is LibTorch's own, on the case's device.
enum class Amp { kNone, kFp16, kBf16 };
// The LoRA adapters' dtype: PEFT's own placement for the stack (autocast_adapter_dtype=True where
// the release has it: fp32); `base`: autocast_adapter_dtype=False (the base layer's dtype as PEFT
// reads it); `model`: cast by hand to the model's dtype after get_peft_model (the QLoRA recipes'
// casts, and what the original core always did).
enum class AdapterDtype { kPeft, kBase, kModel };
// Gradient checkpointing of each decoder layer (torch.utils.checkpoint's use_reentrant).
enum class GradCheckpointing { kOff, kReentrant, kNonReentrant };
// Which library releases' casts the step follows (training/cast_policy.h names the releases and
// the source lines of each): one library differs from `current` per value.
enum class Stack { kCurrent, kBnb049, kBnb046, kBnb044, kPeft011, kPeft05 };
// Model presets (training/model.h): tiny (tests, CI), outlier (tiny with LLaMA-like activation
// outliers), small and 7b-layer (timing).
enum class ModelPreset { kTiny, kOutlier, kSmall, k7bLayer };

std::string to_string(WeightFormat v);       // none nf4 fp4 int8
std::string to_string(Dtype v);              // fp32 fp16 bf16
std::string to_string(OptimizerKind v);      // adamw-fp32 adamw-param adamw8bit paged-adamw8bit
std::string to_string(Amp v);                // none fp16 bf16
std::string to_string(AdapterDtype v);       // peft base model
std::string to_string(GradCheckpointing v);  // off reentrant non-reentrant
std::string to_string(Stack v);              // current bnb-0.49 bnb-0.46 bnb-0.44 peft-0.11 peft-0.5
std::string to_string(ModelPreset v);        // tiny outlier small 7b-layer
// Parsers throw std::invalid_argument naming the bad value and listing the valid ones.
WeightFormat weight_format_from_string(const std::string& s);
Dtype dtype_from_string(const std::string& s);
OptimizerKind optimizer_from_string(const std::string& s);
Amp amp_from_string(const std::string& s);
AdapterDtype adapter_dtype_from_string(const std::string& s);
GradCheckpointing grad_checkpointing_from_string(const std::string& s);
Stack stack_from_string(const std::string& s);
ModelPreset model_preset_from_string(const std::string& s);

// Every enumerator, in declaration order: for tables, loops over the whole matrix, and the valid
// lists in error messages.
inline constexpr std::array<WeightFormat, 4> kAllWeightFormats = {
    WeightFormat::kNone, WeightFormat::kNf4, WeightFormat::kFp4, WeightFormat::kInt8};
inline constexpr std::array<Dtype, 3> kAllDtypes = {Dtype::kFp32, Dtype::kFp16, Dtype::kBf16};
inline constexpr std::array<OptimizerKind, 4> kAllOptimizers = {
    OptimizerKind::kAdamWFp32, OptimizerKind::kAdamWParamDtype, OptimizerKind::kAdamW8bit,
    OptimizerKind::kPagedAdamW8bit};
inline constexpr std::array<Amp, 3> kAllAmps = {Amp::kNone, Amp::kFp16, Amp::kBf16};
inline constexpr std::array<AdapterDtype, 3> kAllAdapterDtypes = {
    AdapterDtype::kPeft, AdapterDtype::kBase, AdapterDtype::kModel};
inline constexpr std::array<GradCheckpointing, 3> kAllGradCheckpointing = {
    GradCheckpointing::kOff, GradCheckpointing::kReentrant, GradCheckpointing::kNonReentrant};
inline constexpr std::array<Stack, 6> kAllStacks = {Stack::kCurrent, Stack::kBnb049,
                                                    Stack::kBnb046,  Stack::kBnb044,
                                                    Stack::kPeft011, Stack::kPeft05};
inline constexpr std::array<ModelPreset, 4> kAllModelPresets = {
    ModelPreset::kTiny, ModelPreset::kOutlier, ModelPreset::kSmall, ModelPreset::k7bLayer};

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
  // The model's dtype (torch_dtype): the checkpoint and every module that is not quantized.
  Dtype param_dtype = Dtype::kFp32;
  Dtype compute_dtype = Dtype::kFp32;  // bnb_4bit_compute_dtype
  OptimizerKind optimizer = OptimizerKind::kAdamWFp32;
  Amp amp = Amp::kNone;
  AdapterDtype adapter_dtype = AdapterDtype::kModel;
  bool prepare_kbit = false;  // peft.prepare_model_for_kbit_training before get_peft_model
  GradCheckpointing grad_checkpointing = GradCheckpointing::kOff;
  Stack stack = Stack::kCurrent;
  ModelPreset model = ModelPreset::kTiny;

  // "<device>/<weights>[-dq]/param=<dtype>/compute=<dtype>/optim=<optimizer>/amp=<amp>/
  // adapter=<adapter>/kbit=<off|on>/ckpt=<ckpt>/stack=<stack>/model=<preset>"; "-dq" only for
  // nf4/fp4 with double_quant.
  std::string id() const;
  // Inverse of id(); throws std::invalid_argument with the offending part (also for "-dq" on
  // none/int8, which id() never writes). Accepts device "auto" (ids of an unresolved matrix) and
  // the five-part ids of the original core (the later axes at their defaults, see above).
  static Case from_id(const std::string& id);
  // (axis, value) pairs in id order, e.g. {"weights","nf4"}, {"double_quant","true"}, {"amp",
  // "fp16"}: the one list CTest labels, rules and report columns read (names: case_axes()).
  std::vector<std::pair<std::string, std::string>> axes() const;

  friend bool operator==(const Case& a, const Case& b) { return a.id() == b.id(); }
};

// The axes as matrix and rules files name them, in id order, with their valid values (device:
// "auto", "cpu", "cuda:N"). `id_key` is the key in ids ("param" for param_dtype); empty for the
// positional device and weights parts, and for double_quant (the "-dq" suffix).
struct AxisInfo {
  std::string name;
  std::string id_key;
  std::vector<std::string> values;
};
const std::vector<AxisInfo>& case_axes();
// Sets axis `name` of `c` from its spelling in matrix files ("double_quant": false/true,
// "prepare_kbit": off/on); std::invalid_argument naming the axis or value and the valid ones.
void set_axis(Case& c, const std::string& name, const std::string& value);

// Settings that apply to every case of a run (not part of the id).
struct RunSettings {
  int steps = 8;               // timed training steps (after warm-up)
  int warmup_steps = 1;
  int lora_rank = 8;
  float lora_alpha = 16.0f;
  float lora_dropout = 0.05f;
  float learning_rate = 1e-3f;
  uint64_t seed = 1234;
};

}  // namespace qlc::harness
