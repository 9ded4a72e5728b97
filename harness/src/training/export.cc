// A case's training inputs for a peer (see export.h).
#include "qlc/harness/export.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "qlc/kernels/safetensors.h"
#include "training/checkpoint.h"
#include "training/lora.h"
#include "training/model.h"
#include "training/rng.h"
#include "training/synthetic_task.h"
#include "verdicts/learning.h"

namespace qlc::harness {
namespace {

namespace fs = std::filesystem;

void write_text_atomically(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) throw std::runtime_error("cannot write '" + tmp.string() + "'");
  }
  fs::rename(tmp, path);
}

nlohmann::json llama_config(const ModelConfig& c, Dtype dtype) {
  const char* torch_dtype = dtype == Dtype::kFp32 ? "float32" : dtype == Dtype::kFp16 ? "float16" : "bfloat16";
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"vocab_size", c.vocab_size},
          {"hidden_size", c.hidden_size},
          {"intermediate_size", c.intermediate_size},
          {"num_hidden_layers", c.num_layers},
          {"num_attention_heads", c.num_heads},
          {"num_key_value_heads", c.num_kv_heads},
          {"head_dim", c.head_dim()},
          {"hidden_act", "silu"},
          {"max_position_embeddings", c.seq_len},
          {"rms_norm_eps", c.rms_norm_eps},
          {"rope_theta", c.rope_theta},
          {"rope_scaling", nullptr},
          {"attention_bias", false},
          {"attention_dropout", 0.0},
          {"mlp_bias", false},
          {"tie_word_embeddings", false},
          {"initializer_range", c.init_std},
          {"pretraining_tp", 1},
          {"use_cache", false},
          {"torch_dtype", torch_dtype}};
}

}  // namespace

void export_case(const Case& c, const RunSettings& settings, const std::string& dir) {
  const fs::path out = dir;
  fs::create_directories(out);
  const ModelConfig config = model_preset(c.model);
  write_checkpoint((out / "model.safetensors").string(), config, scalar_type(c.param_dtype),
                   settings.seed);
  write_text_atomically(out / "config.json", llama_config(config, c.param_dtype).dump(2) + "\n");

  const SyntheticTask task =
      make_synthetic_task(config.vocab_size, config.batch_size, config.seq_len, settings.seed);
  kernels::StFile batch;
  const std::vector<int64_t> shape = {config.batch_size, config.seq_len};
  batch.tensors["input_ids"] = kernels::make_st_tensor(
      "I64", shape, task.input_ids.data_ptr<int64_t>(), task.input_ids.numel());
  batch.tensors["labels"] =
      kernels::make_st_tensor("I64", shape, task.labels.data_ptr<int64_t>(), task.labels.numel());
  kernels::write_safetensors((out / "batch.safetensors").string(), batch);

  kernels::StFile lora;
  for (const LinearSpec& s : linear_specs(config)) {
    const std::vector<float> a =
        lora_a_init(settings.lora_rank, s.in_features, stream_seed(settings.seed, s.name + ".lora_A"));
    lora.tensors[s.name + ".lora_A.weight"] = kernels::make_st_tensor(
        "F32", {settings.lora_rank, s.in_features}, a.data(), static_cast<int64_t>(a.size()));
  }
  kernels::write_safetensors((out / "lora_init.safetensors").string(), lora);

  nlohmann::json axes = nlohmann::json::object();
  for (const auto& [axis, value] : c.axes()) axes[axis] = value;
  const nlohmann::json description = {
      {"case", c.id()},
      {"axes", axes},
      {"settings",
       {{"steps", settings.steps},
        {"warmup_steps", settings.warmup_steps},
        {"lora_rank", settings.lora_rank},
        {"lora_alpha", settings.lora_alpha},
        {"lora_dropout", settings.lora_dropout},
        {"learning_rate", settings.learning_rate},
        {"weight_decay", 0.0},
        {"seed", settings.seed}}},
      // The one generator every LoRA dropout draws from, in layer order (torch.manual_seed of it
      // gives the global CPU generator the same state).
      {"dropout_seed", stream_seed(settings.seed, "lora.dropout")},
      {"target_modules", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}},
      {"loss", "mean cross-entropy of logits.float() against labels (already shifted), per step"},
      {"no_learning_relative_margin", kNoLearningRelativeMargin},
  };
  write_text_atomically(out / "case.json", description.dump(2) + "\n");
}

}  // namespace qlc::harness
