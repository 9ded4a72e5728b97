// The decoder, its checkpoint and its LoRA layers.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "training/checkpoint.h"
#include "training/lora.h"
#include "training/model.h"
#include "qlc/kernels/safetensors.h"

namespace qlc::harness {
namespace {

namespace fs = std::filesystem;

std::string temp_path(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / "qlc_model_test";
  fs::create_directories(dir);
  return (dir / name).string();
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(ModelPreset, TinyShapes) {
  const ModelConfig c = model_preset("tiny");
  EXPECT_EQ(c.head_dim() * c.num_heads, c.hidden_size);
  EXPECT_EQ(c.num_heads % c.num_kv_heads, 0);
  EXPECT_EQ(linear_specs(c).size(), static_cast<size_t>(7 * c.num_layers));
  const std::string error = error_of([] { model_preset("huge"); });
  EXPECT_NE(error.find("'huge'"), std::string::npos);
  EXPECT_NE(error.find("tiny"), std::string::npos);
  const ModelConfig big = model_preset("7b-layer");
  EXPECT_EQ(big.hidden_size, 4096);
  EXPECT_EQ(big.intermediate_size, 11008);
}

TEST(Checkpoint, RoundTripsDeterministicWeights) {
  const ModelConfig c = model_preset("tiny");
  const std::string a = temp_path("a.safetensors"), b = temp_path("b.safetensors");
  write_checkpoint(a, c, at::kBFloat16, 7);
  write_checkpoint(b, c, at::kBFloat16, 7);
  EXPECT_EQ(read_bytes(a), read_bytes(b)) << "same seed, same bytes";
  write_checkpoint(b, c, at::kBFloat16, 8);
  EXPECT_NE(read_bytes(a), read_bytes(b));

  const Checkpoint ckpt = read_checkpoint(a, c);
  EXPECT_EQ(ckpt.size(), checkpoint_layout(c).size());
  const at::Tensor up = ckpt.at("model.layers.1.mlp.up_proj.weight");
  EXPECT_EQ(up.scalar_type(), at::kBFloat16);
  EXPECT_EQ(up.sizes(), (std::vector<int64_t>{c.intermediate_size, c.hidden_size}));
  // Sample std of n = 65536 uniform draws: relative standard error sqrt((9/5 - 1) / n) / 2
  // = 0.0017 (kurtosis of a uniform is 9/5); 2% is over ten standard errors.
  EXPECT_NEAR(up.to(at::kFloat).std().item<double>(), c.init_std, 0.02 * c.init_std);
  EXPECT_TRUE(at::equal(ckpt.at("model.norm.weight"), at::ones({c.hidden_size}, at::kBFloat16)));
}

TEST(Checkpoint, DamagedFilesGiveClearErrors) {
  const ModelConfig tiny = model_preset("tiny");
  const std::string path = temp_path("damaged.safetensors");
  write_checkpoint(path, tiny, at::kFloat, 1);
  const std::string bytes = read_bytes(path);

  {  // cut short
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() / 2);
    const std::string e = error_of([&] { read_checkpoint(path, tiny); });
    EXPECT_NE(e.find(path), std::string::npos) << e;
  }
  {  // garbage header length
    std::ofstream(path, std::ios::binary | std::ios::trunc) << std::string(64, '\xff');
    const std::string e = error_of([&] { read_checkpoint(path, tiny); });
    EXPECT_NE(e.find(path), std::string::npos) << e;
  }
  {  // a checkpoint of another shape
    ModelConfig other = tiny;
    other.intermediate_size = 256;
    write_checkpoint(path, other, at::kFloat, 1);
    const std::string e = error_of([&] { read_checkpoint(path, tiny); });
    EXPECT_NE(e.find("model.layers.0.mlp.gate_proj.weight"), std::string::npos) << e;
    EXPECT_NE(e.find("[512, 128]"), std::string::npos) << e;
  }
  {  // a tensor missing
    kernels::StFile file = kernels::read_safetensors(temp_path("a.safetensors"));
    file.tensors.erase("lm_head.weight");
    kernels::write_safetensors(path, file);
    const std::string e = error_of([&] { read_checkpoint(path, tiny); });
    EXPECT_NE(e.find("lm_head.weight"), std::string::npos) << e;
  }
  {  // no such file
    const std::string e = error_of([&] { read_checkpoint(temp_path("missing.safetensors"), tiny); });
    EXPECT_NE(e.find("missing.safetensors"), std::string::npos) << e;
  }
}

Model build(const ModelConfig& c, WeightFormat weights, at::ScalarType param,
            at::ScalarType compute, uint64_t seed = 3) {
  const std::string path = temp_path("model.safetensors");
  write_checkpoint(path, c, param, seed);
  BuildOptions o;
  o.weights = weights;
  o.param_dtype = param;
  o.compute_dtype = compute;
  o.seed = seed;
  return Model(c, read_checkpoint(path, c), o);
}

at::Tensor tokens(const ModelConfig& c, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return at::randint(c.vocab_size, {c.batch_size, c.seq_len}, gen, at::TensorOptions().dtype(at::kLong));
}

TEST(Model, ForwardShapesDtypesAndInitialLoss) {
  const ModelConfig c = model_preset("tiny");
  for (WeightFormat w : {WeightFormat::kNone, WeightFormat::kNf4, WeightFormat::kInt8}) {
    Model m = build(c, w, at::kFloat, at::kFloat);
    const at::Tensor ids = tokens(c, 1);
    const at::Tensor logits = m.logits(ids, false);
    EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{c.batch_size, c.seq_len, c.vocab_size}));
    EXPECT_EQ(logits.scalar_type(), at::kFloat);
    // Logits of the random base have std ~ init_std * sqrt(hidden) = 0.23, so the cross-entropy
    // of any labels is ln(V) + O(0.23^2 / 2) = ln(V) + 0.03: within 0.1 of ln(V).
    const at::Tensor loss = m.loss(ids, tokens(c, 2), false);
    EXPECT_EQ(loss.scalar_type(), at::kFloat);
    EXPECT_NEAR(loss.item<double>(), std::log(static_cast<double>(c.vocab_size)), 0.1);
    const std::vector<at::Tensor> params = m.trainable_parameters();
    EXPECT_EQ(params.size(), static_cast<size_t>(14 * c.num_layers));
    EXPECT_EQ(m.trainable_parameter_names().size(), params.size());
    for (const at::Tensor& p : params) EXPECT_TRUE(p.requires_grad());
  }
}

TEST(Model, ParamDtypeReachesLogitsAndAdapters) {
  const ModelConfig c = model_preset("tiny");
  Model m = build(c, WeightFormat::kNf4, at::kBFloat16, at::kFloat);
  EXPECT_EQ(m.logits(tokens(c, 1), true).scalar_type(), at::kBFloat16);
  for (const at::Tensor& p : m.trainable_parameters()) EXPECT_EQ(p.scalar_type(), at::kBFloat16);
}

TEST(Model, AttentionIsCausal) {
  const ModelConfig c = model_preset("tiny");
  Model m = build(c, WeightFormat::kNf4, at::kFloat, at::kFloat);
  at::Tensor ids = tokens(c, 4);
  const at::Tensor before = m.logits(ids, false);
  ids.select(1, c.seq_len - 1).fill_(0);  // change only the last position
  const at::Tensor after = m.logits(ids, false);
  const int64_t t = c.seq_len - 1;
  EXPECT_TRUE(at::equal(before.slice(1, 0, t), after.slice(1, 0, t)));
  EXPECT_FALSE(at::equal(before.slice(1, t), after.slice(1, t)));
}

TEST(Model, BaseWeightAccounting) {
  const ModelConfig c = model_preset("tiny");
  int64_t numel = 0, rows = 0;
  for (const LinearSpec& s : linear_specs(c)) {
    numel += s.out_features * s.in_features;
    rows += s.out_features;
  }
  Model int8 = build(c, WeightFormat::kInt8, at::kFloat, at::kFloat);
  EXPECT_EQ(int8.base_weight_numel(), numel);
  EXPECT_EQ(int8.base_weight_rows(), rows);
  EXPECT_EQ(int8.base_weight_bytes(), numel + 4 * rows);
  Model none = build(c, WeightFormat::kNone, at::kBFloat16, at::kBFloat16);
  EXPECT_EQ(none.base_weight_bytes(), 2 * numel);
}

// ---- LoRA --------------------------------------------------------------------------------------

at::Tensor randn(std::vector<int64_t> shape, uint64_t seed, double scale = 1.0) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat)) * scale;
}

LoraLinear lora_over(std::unique_ptr<BaseLinear> base, at::ScalarType dtype, double dropout,
                     uint64_t seed) {
  LoraOptions o;
  o.dtype = dtype;
  o.dropout = dropout;
  return LoraLinear(std::move(base), o, at::Device(at::kCPU), seed,
                    at::detail::createCPUGenerator(seed + 100));
}

TEST(Lora, ZeroInitOutputEqualsBaseOutput) {
  const at::Tensor w = randn({64, 128}, 1, 0.02);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const at::Tensor x = randn({2, 3, 128}, 2).to(dtype);
    std::vector<std::unique_ptr<BaseLinear>> bases;
    bases.push_back(std::make_unique<DenseLinear>(w.to(dtype)));
    bases.push_back(std::make_unique<Linear4bit>(w.to(dtype), kernels::QuantType4::kNf4, true,
                                                 at::kFloat));
    bases.push_back(std::make_unique<Linear8bitLt>(w.to(dtype), Int8Path::kDequantizeMatmul));
    for (auto& base : bases) {
      const at::Tensor expected = base->forward(x);
      LoraLinear layer = lora_over(std::move(base), dtype, 0.05, 3);
      EXPECT_TRUE(at::equal(layer.lora_b(), at::zeros_like(layer.lora_b())));
      // B = 0 makes the branch exactly 0 whatever dropout draws: the sum is the base's output.
      EXPECT_TRUE(at::equal(layer.forward(x, true), expected));
      EXPECT_TRUE(at::equal(layer.forward(x, false), expected));
    }
  }
}

TEST(Lora, KaimingUniformInitIsSeeded) {
  const at::Tensor w = randn({64, 128}, 1);
  LoraLinear a = lora_over(std::make_unique<DenseLinear>(w), at::kFloat, 0.0, 5);
  LoraLinear b = lora_over(std::make_unique<DenseLinear>(w), at::kFloat, 0.0, 5);
  LoraLinear c = lora_over(std::make_unique<DenseLinear>(w), at::kFloat, 0.0, 6);
  EXPECT_TRUE(at::equal(a.lora_a(), b.lora_a()));
  EXPECT_FALSE(at::equal(a.lora_a(), c.lora_a()));
  EXPECT_EQ(a.lora_a().sizes(), (std::vector<int64_t>{8, 128}));
  EXPECT_EQ(a.lora_b().sizes(), (std::vector<int64_t>{64, 8}));
  EXPECT_LE(a.lora_a().abs().max().item<double>(), 1.0 / std::sqrt(128.0));  // kaiming bound
  EXPECT_DOUBLE_EQ(a.scaling(), 16.0 / 8.0);
}

// PEFT's casts: x to the adapters' dtype, the branch back to the base result's dtype.
TEST(Lora, CastsAsPeftDoes) {
  const at::Tensor w = randn({64, 128}, 1, 0.02);
  LoraLinear layer = lora_over(
      std::make_unique<Linear4bit>(w, kernels::QuantType4::kNf4, false, at::kFloat), at::kBFloat16,
      0.0, 7);
  layer.lora_b().detach().copy_(randn({64, 8}, 8, 0.01));  // make the branch non-zero
  const at::Tensor x = randn({4, 128}, 9);
  const at::Tensor y = layer.forward(x, false);
  EXPECT_EQ(y.scalar_type(), at::kFloat);
  const at::Tensor branch = at::linear(at::linear(x.to(at::kBFloat16), layer.lora_a()), layer.lora_b()) *
                            layer.scaling();
  EXPECT_TRUE(at::equal(y, layer.base().forward(x) + branch.to(at::kFloat)));
}

// Without PEFT's cast an fp32 activation meets a bf16 adapter: the error users report. This is
// what LibTorch raises for it (the harness never adds a cast PEFT does not make).
TEST(Lora, UncastMixIsLibTorchsDtypeError) {
  const at::Tensor x = randn({4, 128}, 10);
  const at::Tensor a = randn({8, 128}, 11).to(at::kBFloat16);
  EXPECT_THROW(at::linear(x, a), c10::Error);
}

TEST(Lora, DropoutIsSeededAndScaled) {
  const at::Tensor w = randn({64, 128}, 1, 0.02);
  LoraLinear a = lora_over(std::make_unique<DenseLinear>(w), at::kFloat, 0.5, 12);
  LoraLinear b = lora_over(std::make_unique<DenseLinear>(w), at::kFloat, 0.5, 12);
  a.lora_b().detach().fill_(0.01);
  b.lora_b().detach().fill_(0.01);
  const at::Tensor x = randn({4, 128}, 13);
  const at::Tensor ya = a.forward(x, true);
  EXPECT_TRUE(at::equal(ya, b.forward(x, true)));    // same seed, same masks
  EXPECT_FALSE(at::equal(ya, a.forward(x, true)));   // the stream moves on
  EXPECT_TRUE(at::equal(a.forward(x, false), b.forward(x, false)));  // eval: no dropout
}

}  // namespace
}  // namespace qlc::harness
