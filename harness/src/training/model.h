// A small LLaMA-style decoder (transformers' LlamaForCausalLM, eager attention): token embedding,
// per layer RMSNorm -> attention with rotary positions (grouped KV heads) -> residual, RMSNorm ->
// SwiGLU MLP -> residual; final RMSNorm; LM head; fp32 cross-entropy. The seven linear layers of
// every decoder layer are a frozen base (quantized or not) with LoRA adapters, as PEFT's
// target_modules="all-linear" gives (the LM head stays unquantized and without adapters, as
// transformers' bitsandbytes loading and PEFT both leave the output layer alone).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "training/lora.h"
#include "qlc/harness/case.h"
#include "training/quantized_linear.h"

namespace qlc::harness {

struct ModelConfig {
  std::string name;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t batch_size = 0;  // sequences per training step
  int64_t seq_len = 0;     // tokens per sequence
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  double init_std = 0.02;  // LLaMA's initializer_range

  int64_t head_dim() const { return hidden_size / num_heads; }
  int64_t tokens_per_step() const { return batch_size * seq_len; }
};

// Presets: "tiny" (tests and CI), "small" and "7b-layer" (one decoder layer shaped like LLaMA-7B's,
// with its vocabulary) for timing. Throws std::invalid_argument listing the presets.
ModelConfig model_preset(const std::string& name);
std::vector<std::string> model_preset_names();

// The full names of the linear layers ("model.layers.0.self_attn.q_proj"), in checkpoint order,
// with their [out, in] shapes.
struct LinearSpec {
  std::string name;
  int64_t out_features;
  int64_t in_features;
};
std::vector<LinearSpec> linear_specs(const ModelConfig& config);

using Checkpoint = std::map<std::string, at::Tensor>;  // name -> CPU tensor

struct BuildOptions {
  WeightFormat weights = WeightFormat::kNf4;
  bool double_quant = false;
  at::ScalarType param_dtype = at::kFloat;    // non-quantized modules and adapters
  at::ScalarType compute_dtype = at::kFloat;  // Linear4bit's compute dtype
  int64_t blocksize = 64;
  Int8Path int8_path = Int8Path::kDequantizeMatmul;
  at::Device device = at::Device(at::kCPU);
  LoraOptions lora;   // lora.dtype is set from param_dtype
  uint64_t seed = 0;  // LoRA init and dropout
};

// A case's settings as BuildOptions (dtypes, quantization, LoRA, the int8 path of its device).
BuildOptions build_options_for(const Case& c, const RunSettings& settings, const at::Device& device);

// Where a case's deterministic checkpoint goes in `work_dir`: one file per preset, dtype and seed.
std::string checkpoint_path_for(const std::string& work_dir, const ModelConfig& config, Dtype dtype,
                                uint64_t seed);

at::ScalarType scalar_type(Dtype d);

class Model {
 public:
  // Loads as transformers does: every tensor cast to param_dtype on the device, then the linear
  // layers quantized (their quantization state remembers param_dtype).
  Model(const ModelConfig& config, const Checkpoint& checkpoint, const BuildOptions& options);

  at::Tensor logits(const at::Tensor& input_ids, bool training) const;  // [B, T, V], param dtype
  // Mean next-token cross-entropy in fp32 (logits.float(), as transformers' loss does).
  at::Tensor loss(const at::Tensor& input_ids, const at::Tensor& labels, bool training) const;

  std::vector<at::Tensor> trainable_parameters();
  // "model.layers.0.self_attn.q_proj.lora_A.weight", ... in trainable_parameters() order.
  std::vector<std::string> trainable_parameter_names() const;
  const ModelConfig& config() const { return config_; }
  std::vector<LoraLinear*> lora_layers();

  // The frozen linear weights: bytes stored, weights they stand for, rows (int8 keeps one scale
  // per row).
  int64_t base_weight_bytes() const;
  int64_t base_weight_numel() const;
  int64_t base_weight_rows() const;

 private:
  struct Layer {
    at::Tensor input_norm;
    at::Tensor post_attention_norm;
    std::vector<LoraLinear> attn;  // q, k, v, o
    std::vector<LoraLinear> mlp;   // gate, up, down
  };
  at::Tensor attention(const Layer& layer, const at::Tensor& h, bool training) const;
  at::Tensor mlp(const Layer& layer, const at::Tensor& h, bool training) const;

  ModelConfig config_;
  at::Tensor embed_;
  std::vector<Layer> layers_;
  at::Tensor final_norm_;
  at::Tensor lm_head_;
  at::Tensor rope_cos_;  // fp32 [T, head_dim]
  at::Tensor rope_sin_;
  at::Tensor causal_mask_;  // [T, T] in param dtype: 0 on and below the diagonal, dtype's lowest above
};

}  // namespace qlc::harness
