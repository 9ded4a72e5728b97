// A small LLaMA-style decoder (transformers' LlamaForCausalLM, eager attention): token embedding,
// per layer RMSNorm -> attention with rotary positions (grouped KV heads) -> residual, RMSNorm ->
// SwiGLU MLP -> residual; final RMSNorm; LM head; fp32 cross-entropy. The seven linear layers of
// every decoder layer are a frozen base (quantized or not) with LoRA adapters, as PEFT's
// target_modules="all-linear" gives (the LM head stays unquantized and without adapters, as
// transformers' bitsandbytes loading and PEFT both leave the output layer alone).
//
// Built in the order users do it: load in the model dtype (torch_dtype) and quantize; then
// prepare_model_for_kbit_training (prepare_kbit); then get_peft_model (adapters placed by the
// stack's cast policy, or cast by hand: adapter_dtype); then gradient checkpointing per decoder
// layer (grad_checkpointing).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "qlc/harness/case.h"
#include "training/cast_policy.h"
#include "training/checkpointing.h"
#include "training/lora.h"
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
  // Activation outliers (the `outlier` preset; empty elsewhere): the embeddings of every
  // `outlier_token_stride`-th token (from token 5) carry `outlier_magnitude` in the residual
  // channels `outlier_channels`, and in the last layer's MLP the intermediate neurons
  // `outlier_neurons` read those channels with gate and up weights `outlier_weight` each.
  std::vector<int64_t> outlier_channels;
  double outlier_magnitude = 0.0;
  int64_t outlier_token_stride = 0;
  std::vector<int64_t> outlier_neurons;
  double outlier_weight = 0.0;

  int64_t head_dim() const { return hidden_size / num_heads; }
  int64_t tokens_per_step() const { return batch_size * seq_len; }
};

// Presets: "tiny" (tests and CI), "outlier" (tiny with activation outliers, see model.cc),
// "small" and "7b-layer" (one decoder layer shaped like LLaMA-7B's, with its vocabulary) for
// timing. The string form throws std::invalid_argument listing the presets.
ModelConfig model_preset(ModelPreset preset);
ModelConfig model_preset(const std::string& name);

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
  at::ScalarType param_dtype = at::kFloat;    // the model dtype (torch_dtype)
  at::ScalarType compute_dtype = at::kFloat;  // Linear4bit's compute dtype
  int64_t blocksize = 64;
  Int8Path int8_path = Int8Path::kDequantizeMatmul;
  at::Device device = at::Device(at::kCPU);
  LoraOptions lora;   // lora.dtype and the cast flags are set per layer from the fields below
  AdapterDtype adapter_dtype = AdapterDtype::kModel;
  bool prepare_kbit = false;
  GradCheckpointing grad_checkpointing = GradCheckpointing::kOff;
  Amp amp = Amp::kNone;  // PEFT skips its casts under CUDA autocast
  Stack stack = Stack::kCurrent;
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
  // layers quantized (their quantization state remembers param_dtype); then prepare_kbit, the
  // adapters and gradient checkpointing as the options say.
  Model(const ModelConfig& config, const Checkpoint& checkpoint, const BuildOptions& options);
  Model(const Model&) = delete;  // the checkpointed blocks point into it
  Model& operator=(const Model&) = delete;

  at::Tensor logits(const at::Tensor& input_ids, bool training) const;  // [B, T, V]
  // Mean next-token cross-entropy in fp32 (logits.float(), as transformers' loss does).
  at::Tensor loss(const at::Tensor& input_ids, const at::Tensor& labels, bool training) const;

  std::vector<at::Tensor> trainable_parameters();
  // "model.layers.0.self_attn.q_proj.lora_A.weight", ... in trainable_parameters() order.
  std::vector<std::string> trainable_parameter_names() const;
  const ModelConfig& config() const { return config_; }
  std::vector<LoraLinear*> lora_layers();
  // One forward pass of `input_ids` without gradients (eval mode) recording the largest |input| of
  // every linear layer, in lora_layers() order (the audit's overflow check).
  std::vector<double> linear_input_peaks(const at::Tensor& input_ids);
  // The dtypes of the modules that are not quantized (embedding, norms, LM head): the model dtype,
  // or fp32 after prepare_kbit.
  at::ScalarType module_dtype() const { return embed_.scalar_type(); }
  // enable_input_require_grads: the embedding output requires grad (prepare_kbit with reentrant
  // checkpointing over a quantized model).
  bool input_requires_grad() const { return input_requires_grad_; }

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
  at::Tensor decoder_layer(const Layer& layer, const at::Tensor& h, bool training) const;

  ModelConfig config_;
  GradCheckpointing checkpointing_ = GradCheckpointing::kOff;
  bool input_requires_grad_ = false;
  at::Generator dropout_gen_;
  // One checkpointed block per decoder layer (its forward reads `block_training_`, set by logits).
  std::vector<CheckpointedBlock> blocks_;
  mutable bool block_training_ = true;
  at::Tensor embed_;
  std::vector<Layer> layers_;
  at::Tensor final_norm_;
  at::Tensor lm_head_;
  at::Tensor rope_cos_;  // fp32 [T, head_dim]
  at::Tensor rope_sin_;
  at::Tensor causal_mask_;  // [T, T] in the embedding's dtype: 0 on and below the diagonal, the
                            // dtype's lowest above (transformers builds it from inputs_embeds)
};

}  // namespace qlc::harness
