// The LLaMA-style decoder (see model.h) and its presets.
#include "training/model.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <stdexcept>

#include "training/rng.h"

namespace qlc::harness {
namespace {

ModelConfig make_config(const std::string& name, int64_t vocab, int64_t hidden, int64_t inter,
                        int64_t layers, int64_t heads, int64_t kv_heads, int64_t batch,
                        int64_t seq) {
  ModelConfig c;
  c.name = name;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.batch_size = batch;
  c.seq_len = seq;
  return c;
}

// outlier: tiny with the activation outliers of LLaMA-class models, so that fp16 overflows where
// it does for their users and nowhere else. The checkpoint writer plants them in the weights
// (checkpoint.cc, plant_outliers), so the file carries them to every loader.
//  - Outlier features (Dettmers et al. 2022, "LLM.int8()", arXiv:2208.07339): from about 6.7B
//    parameters on, a few hidden dimensions hold magnitudes >= 6 (up to about 60 and more) in most
//    layers and tokens; they are the reason LLM.int8 keeps such columns in 16 bits.
//  - Massive activations (Sun et al. 2024, "Massive Activations in Large Language Models",
//    arXiv:2402.17762): in LLaMA2-7B a few fixed residual channels (1415, 2533) reach magnitudes
//    around 2.6e3 (their Fig. 1 and Table 1: 2622) at a few tokens (the start token, "." and
//    "\n"), about 1e4 times the median activation. Here: channels 7 and 91 carry 2622 in the
//    embeddings of every 16th token (16 of 256 tokens stand for the delimiters).
//  - After RMSNorm those channels read about sqrt(128 / 2) = 8 each. In the last layer's MLP, two
//    intermediate neurons read them with gate and up weights 16.4, so gate and up reach about 262
//    there: the figures transformers#27179 printed for a LLaMA layer in fp16 (gate 255.9, up
//    261.75), where down_proj then returned inf. Their SwiGLU product, about 6.9e4, exceeds fp16's
//    largest value 65504 (bf16 and fp32 hold it), so an fp16 product, an fp16 input cast of
//    down_proj (bnb_4bit_compute_dtype=fp16, or autocast) or fp16 activations (torch_dtype=fp16)
//    give inf, then NaN, as in huggingface/trl#618 and the other reports of FAILURES.md F04.
ModelConfig make_outlier_config() {
  ModelConfig c = make_config("outlier", 256, 128, 512, 2, 4, 2, 8, 32);
  c.outlier_channels = {7, 91};
  c.outlier_magnitude = 2622.0;
  c.outlier_token_stride = 16;
  c.outlier_neurons = {41, 300};
  c.outlier_weight = 16.4;
  return c;
}

const std::vector<ModelConfig>& presets() {
  // tiny: the MLP's adapters (down_proj's A is 8 x 512, gate/up's B 512 x 8) reach AdamW8bit's
  // 4096-element minimum while the attention adapters stay below it, so 8-bit cases exercise both
  // state layouts, as they do on real models. Grouped KV heads (2 for 4 query heads) as LLaMA 2/3.
  static const std::vector<ModelConfig> all = {
      make_config("tiny", 256, 128, 512, 2, 4, 2, 8, 32),
      make_outlier_config(),
      make_config("small", 8192, 512, 1408, 4, 8, 8, 4, 128),
      make_config("7b-layer", 32000, 4096, 11008, 1, 32, 32, 1, 512),
  };
  return all;
}

// torch.finfo(dtype).min: the value transformers puts above the diagonal of the causal mask.
double lowest(at::ScalarType dtype) {
  switch (dtype) {
    case at::kHalf: return -65504.0;
    case at::kBFloat16: return -3.3895313892515355e38;
    default: return -static_cast<double>(std::numeric_limits<float>::max());
  }
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  // LlamaRMSNorm: statistics in fp32, result back in the input dtype, times the weight.
  const at::ScalarType input_dtype = x.scalar_type();
  at::Tensor h = x.to(at::kFloat);
  const at::Tensor variance = h.pow(2).mean({-1}, /*keepdim=*/true);
  h = h * at::rsqrt(variance + eps);
  return weight * h.to(input_dtype);
}

at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.slice(-1, half), x.slice(-1, 0, half)}, -1);
}

// [B, kv, T, d] -> [B, kv * groups, T, d] (transformers' repeat_kv).
at::Tensor repeat_kv(const at::Tensor& x, int64_t groups) {
  if (groups == 1) return x;
  const int64_t b = x.size(0), kv = x.size(1), t = x.size(2), d = x.size(3);
  return x.unsqueeze(2).expand({b, kv, groups, t, d}).reshape({b, kv * groups, t, d});
}

at::Tensor to_device(const Checkpoint& ckpt, const std::string& name, const BuildOptions& o) {
  auto it = ckpt.find(name);
  if (it == ckpt.end()) throw std::invalid_argument("checkpoint has no tensor '" + name + "'");
  at::Tensor t = it->second.to(o.device, o.param_dtype);
  t.set_requires_grad(false);
  return t;
}

// prepare_model_for_kbit_training: every fp16/bf16 parameter that is not a Params4bit becomes
// fp32 (peft utils/other.py); int8 weights are int8, 4-bit ones Params4bit, so only the modules
// that are not quantized (and a dense base's weights) move.
at::Tensor prepared(at::Tensor t, const BuildOptions& o) {
  if (!o.prepare_kbit) return t;
  if (t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16) t = t.to(at::kFloat);
  return t;
}

std::unique_ptr<BaseLinear> make_base(const at::Tensor& weight, const BuildOptions& o,
                                      const c10::intrusive_ptr<DequantBuffers>& buffers) {
  const CastPolicy& policy = cast_policy(o.stack);
  switch (o.weights) {
    case WeightFormat::kNone: return std::make_unique<DenseLinear>(prepared(weight, o));
    case WeightFormat::kNf4:
    case WeightFormat::kFp4:
      return std::make_unique<Linear4bit>(
          weight, o.weights == WeightFormat::kNf4 ? kernels::QuantType4::kNf4 : kernels::QuantType4::kFp4,
          o.double_quant, o.compute_dtype, o.blocksize, policy.linear4bit_input_sets_compute_dtype,
          buffers);
    case WeightFormat::kInt8:
      return std::make_unique<Linear8bitLt>(weight, o.int8_path, kernels::kInt8OutlierThreshold,
                                            policy.int8_backward_casts_grad, buffers);
  }
  throw std::invalid_argument("unknown weight format");
}

// The LoRA options of one layer: its adapters' dtype (the stack's placement over this base, or
// the hand cast) and the casts of the stack's PEFT around it.
LoraOptions lora_options_for(const BaseLinear& base, const BuildOptions& o) {
  const CastPolicy& policy = cast_policy(o.stack);
  LoraOptions lora = o.lora;
  at::ScalarType weight = o.param_dtype, compute = o.param_dtype;
  if (const auto* l4 = dynamic_cast<const Linear4bit*>(&base)) {
    weight = at::kByte;
    compute = l4->compute_dtype();
  } else if (dynamic_cast<const Linear8bitLt*>(&base) != nullptr) {
    weight = compute = at::kChar;
  } else if (const auto* dense = dynamic_cast<const DenseLinear*>(&base)) {
    weight = compute = dense->weight().scalar_type();
  }
  lora.dtype = adapter_dtype_for(policy, o.adapter_dtype, weight, compute, o.param_dtype);
  // `requires_conversion = not torch.is_autocast_enabled()`: CUDA autocast only, so on a CPU the
  // casts happen even under autocast.
  lora.cast_io = !(o.device.is_cuda() && o.amp != Amp::kNone);
  lora.int8_input_fp32 = policy.int8_lora_input_fp32;
  lora.cast_output_before_scaling = policy.lora_output_cast_before_scaling;
  return lora;
}

}  // namespace

ModelConfig model_preset(const std::string& name) {
  for (const ModelConfig& c : presets()) {
    if (c.name == name) return c;
  }
  std::string valid;
  for (const ModelConfig& c : presets()) valid += (valid.empty() ? "" : ", ") + c.name;
  throw std::invalid_argument("unknown model preset '" + name + "' (expected " + valid + ")");
}

ModelConfig model_preset(ModelPreset preset) { return model_preset(to_string(preset)); }

std::vector<LinearSpec> linear_specs(const ModelConfig& c) {
  const int64_t h = c.hidden_size, kv = c.num_kv_heads * c.head_dim(), i = c.intermediate_size;
  std::vector<LinearSpec> specs;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    specs.push_back({p + "self_attn.q_proj", h, h});
    specs.push_back({p + "self_attn.k_proj", kv, h});
    specs.push_back({p + "self_attn.v_proj", kv, h});
    specs.push_back({p + "self_attn.o_proj", h, h});
    specs.push_back({p + "mlp.gate_proj", i, h});
    specs.push_back({p + "mlp.up_proj", i, h});
    specs.push_back({p + "mlp.down_proj", h, i});
  }
  return specs;
}

at::ScalarType scalar_type(Dtype d) {
  switch (d) {
    case Dtype::kFp32: return at::kFloat;
    case Dtype::kFp16: return at::kHalf;
    case Dtype::kBf16: return at::kBFloat16;
  }
  throw std::invalid_argument("unknown dtype");
}

BuildOptions build_options_for(const Case& c, const RunSettings& settings, const at::Device& device) {
  BuildOptions options;
  options.weights = c.weights;
  options.double_quant = c.double_quant;
  options.param_dtype = scalar_type(c.param_dtype);
  options.compute_dtype = scalar_type(c.compute_dtype);
  options.int8_path = int8_path_for_device(device);
  options.device = device;
  options.adapter_dtype = c.adapter_dtype;
  options.prepare_kbit = c.prepare_kbit;
  options.grad_checkpointing = c.grad_checkpointing;
  options.amp = c.amp;
  options.stack = c.stack;
  options.lora.rank = settings.lora_rank;
  options.lora.alpha = settings.lora_alpha;
  options.lora.dropout = settings.lora_dropout;
  options.seed = settings.seed;
  return options;
}

std::string checkpoint_path_for(const std::string& work_dir, const ModelConfig& config, Dtype dtype,
                                uint64_t seed) {
  return (std::filesystem::path(work_dir.empty() ? "." : work_dir) /
          (config.name + "-" + to_string(dtype) + "-seed" + std::to_string(seed) + ".safetensors"))
      .string();
}

Model::Model(const ModelConfig& config, const Checkpoint& ckpt, const BuildOptions& options)
    : config_(config), checkpointing_(options.grad_checkpointing) {
  if (config.hidden_size % config.num_heads != 0 || config.num_heads % config.num_kv_heads != 0 ||
      config.head_dim() % 2 != 0) {
    throw std::invalid_argument("model '" + config.name + "': inconsistent head counts");
  }
  // One dropout stream for the whole model, as nn.Dropout draws from one global generator; CPU
  // gets its own seeded generator, other devices their default one (seeded by the runner).
  dropout_gen_ = options.device.is_cpu()
                     ? at::detail::createCPUGenerator(stream_seed(options.seed, "lora.dropout"))
                     : at::globalContext().defaultGenerator(options.device);

  embed_ = prepared(to_device(ckpt, "model.embed_tokens.weight", options), options);
  const std::vector<LinearSpec> specs = linear_specs(config);
  // Every quantized layer dequantizes into these (see dequant_buffers.h).
  const auto buffers = c10::make_intrusive<DequantBuffers>();
  size_t next = 0;
  for (int64_t l = 0; l < config.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Layer layer;
    layer.input_norm = prepared(to_device(ckpt, p + "input_layernorm.weight", options), options);
    layer.post_attention_norm =
        prepared(to_device(ckpt, p + "post_attention_layernorm.weight", options), options);
    for (int k = 0; k < 7; ++k, ++next) {
      const LinearSpec& s = specs[next];
      std::unique_ptr<BaseLinear> base = make_base(to_device(ckpt, s.name + ".weight", options), options, buffers);
      const LoraOptions lora = lora_options_for(*base, options);
      LoraLinear linear(std::move(base), lora, options.device,
                        stream_seed(options.seed, s.name + ".lora_A"), dropout_gen_);
      (k < 4 ? layer.attn : layer.mlp).push_back(std::move(linear));
    }
    layers_.push_back(std::move(layer));
  }
  final_norm_ = prepared(to_device(ckpt, "model.norm.weight", options), options);
  lm_head_ = prepared(to_device(ckpt, "lm_head.weight", options), options);
  // prepare_model_for_kbit_training enables input grads for reentrant checkpointing of a quantized
  // model (enable_input_require_grads), and only then.
  input_requires_grad_ = options.prepare_kbit && options.weights != WeightFormat::kNone &&
                         options.grad_checkpointing == GradCheckpointing::kReentrant;
  blocks_.reserve(layers_.size());  // addresses stay put: the graphs point at them
  for (const Layer& layer : layers_) {
    const Layer* l = &layer;
    blocks_.push_back({[this, l](const at::Tensor& h) { return decoder_layer(*l, h, block_training_); },
                       dropout_gen_});
  }

  // LlamaRotaryEmbedding in fp32: inv_freq = 1 / theta^(2i/d); angles = position * inv_freq.
  const int64_t d = config.head_dim();
  const at::TensorOptions f32 = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor exponent = at::arange(0, d, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) /
                              static_cast<double>(d);
  const at::Tensor inv_freq = at::pow(config.rope_theta, exponent).reciprocal();
  const at::Tensor positions = at::arange(config.seq_len, f32);
  const at::Tensor freqs = at::outer(positions, inv_freq);
  const at::Tensor emb = at::cat({freqs, freqs}, -1);
  rope_cos_ = emb.cos().to(options.device);
  rope_sin_ = emb.sin().to(options.device);
  causal_mask_ = at::full({config.seq_len, config.seq_len}, lowest(embed_.scalar_type()),
                          at::TensorOptions().dtype(embed_.scalar_type()))
                     .triu(1)
                     .to(options.device);
}

at::Tensor Model::attention(const Layer& layer, const at::Tensor& h, bool training) const {
  const int64_t b = h.size(0), t = h.size(1), d = config_.head_dim();
  const int64_t nh = config_.num_heads, nkv = config_.num_kv_heads;
  at::Tensor q = layer.attn[0].forward(h, training).view({b, t, nh, d}).transpose(1, 2);
  at::Tensor k = layer.attn[1].forward(h, training).view({b, t, nkv, d}).transpose(1, 2);
  at::Tensor v = layer.attn[2].forward(h, training).view({b, t, nkv, d}).transpose(1, 2);
  // cos/sin computed in fp32 and cast to the hidden states' dtype (LlamaRotaryEmbedding casts to
  // inputs_embeds' dtype); under autocast q and k may have another one, and the products promote.
  const at::Tensor cos = rope_cos_.slice(0, 0, t).to(embed_.scalar_type());
  const at::Tensor sin = rope_sin_.slice(0, 0, t).to(embed_.scalar_type());
  q = q * cos + rotate_half(q) * sin;
  k = k * cos + rotate_half(k) * sin;
  k = repeat_kv(k, nh / nkv);
  v = repeat_kv(v, nh / nkv);
  // eager_attention_forward: scores * d^-0.5 + mask, softmax in fp32, back to the query's dtype.
  at::Tensor scores = at::matmul(q, k.transpose(2, 3)) * (1.0 / std::sqrt(static_cast<double>(d)));
  scores = scores + causal_mask_.slice(0, 0, t).slice(1, 0, t);
  const at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  const at::Tensor out = at::matmul(probs, v).transpose(1, 2).contiguous().reshape({b, t, nh * d});
  return layer.attn[3].forward(out, training);
}

at::Tensor Model::mlp(const Layer& layer, const at::Tensor& h, bool training) const {
  const at::Tensor gate = layer.mlp[0].forward(h, training);
  const at::Tensor up = layer.mlp[1].forward(h, training);
  return layer.mlp[2].forward(at::silu(gate) * up, training);
}

at::Tensor Model::decoder_layer(const Layer& layer, const at::Tensor& h, bool training) const {
  const at::Tensor after_attention =
      h + attention(layer, rms_norm(h, layer.input_norm, config_.rms_norm_eps), training);
  return after_attention +
         mlp(layer, rms_norm(after_attention, layer.post_attention_norm, config_.rms_norm_eps), training);
}

at::Tensor Model::logits(const at::Tensor& input_ids, bool training) const {
  at::Tensor h = at::embedding(embed_, input_ids);
  if (input_requires_grad_) h.requires_grad_(true);  // enable_input_require_grads' forward hook
  block_training_ = training;
  for (const CheckpointedBlock& block : blocks_) {
    // transformers checkpoints decoder layers in training only.
    h = run_checkpointed(block, h, training ? checkpointing_ : GradCheckpointing::kOff);
  }
  h = rms_norm(h, final_norm_, config_.rms_norm_eps);
  return at::linear(h, lm_head_);
}

at::Tensor Model::loss(const at::Tensor& input_ids, const at::Tensor& labels, bool training) const {
  const at::Tensor logits_fp32 = logits(input_ids, training).to(at::kFloat);
  return at::cross_entropy_loss(logits_fp32.reshape({-1, config_.vocab_size}), labels.reshape({-1}));
}

std::vector<LoraLinear*> Model::lora_layers() {
  std::vector<LoraLinear*> out;
  for (Layer& layer : layers_) {
    for (LoraLinear& l : layer.attn) out.push_back(&l);
    for (LoraLinear& l : layer.mlp) out.push_back(&l);
  }
  return out;
}

std::vector<double> Model::linear_input_peaks(const at::Tensor& input_ids) {
  const std::vector<LoraLinear*> layers = lora_layers();
  for (LoraLinear* l : layers) l->track_input_peak(true);
  {
    c10::NoGradGuard no_grad;
    logits(input_ids, /*training=*/false);
  }
  std::vector<double> peaks;
  for (LoraLinear* l : layers) {
    peaks.push_back(l->input_peak());
    l->track_input_peak(false);
  }
  return peaks;
}

std::vector<at::Tensor> Model::trainable_parameters() {
  std::vector<at::Tensor> params;
  for (LoraLinear* l : lora_layers()) {
    params.push_back(l->lora_a());
    params.push_back(l->lora_b());
  }
  return params;
}

std::vector<std::string> Model::trainable_parameter_names() const {
  std::vector<std::string> names;
  for (const LinearSpec& s : linear_specs(config_)) {
    names.push_back(s.name + ".lora_A.weight");
    names.push_back(s.name + ".lora_B.weight");
  }
  return names;
}

int64_t Model::base_weight_bytes() const {
  int64_t n = 0;
  for (const Layer& layer : layers_) {
    for (const LoraLinear& l : layer.attn) n += l.base().storage_bytes();
    for (const LoraLinear& l : layer.mlp) n += l.base().storage_bytes();
  }
  return n;
}

int64_t Model::base_weight_numel() const {
  int64_t n = 0;
  for (const Layer& layer : layers_) {
    for (const LoraLinear& l : layer.attn) n += l.base().numel();
    for (const LoraLinear& l : layer.mlp) n += l.base().numel();
  }
  return n;
}

int64_t Model::base_weight_rows() const {
  int64_t n = 0;
  for (const Layer& layer : layers_) {
    for (const LoraLinear& l : layer.attn) n += l.base().out_features();
    for (const LoraLinear& l : layer.mlp) n += l.base().out_features();
  }
  return n;
}

}  // namespace qlc::harness
