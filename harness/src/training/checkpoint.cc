// Checkpoint writing and reading (see checkpoint.h), on the kernels' safetensors reader/writer.
#include "training/checkpoint.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstring>
#include <set>
#include <sstream>

#include "qlc/kernels/safetensors.h"
#include "training/rng.h"

namespace qlc::harness {
namespace {

std::string st_dtype(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return "F32";
    case at::kHalf: return "F16";
    case at::kBFloat16: return "BF16";
    default: throw std::invalid_argument("checkpoint dtype must be fp32, fp16 or bf16");
  }
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream s;
  s << '[';
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << ']';
  return s.str();
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw kernels::SafetensorsError(path + ": " + what);
}

// The activation outliers of the `outlier` preset (model.h; the figures and their sources are in
// model.cc), planted in the drawn weights so that the checkpoint file carries them and any loader
// (ours, transformers' from_pretrained in the peer check) meets the same overflow:
//  - embedding rows of the "delimiter" tokens (5, 5 + stride, ...): `outlier_magnitude` in each
//    outlier channel, as massive activations sit in a few fixed residual channels at a few tokens;
//  - the last layer's gate_proj and up_proj: rows `outlier_neurons` read every outlier channel
//    with `outlier_weight`, so that the SwiGLU product of those neurons exceeds fp16's range.
// Each planted weight is the largest of its 4-bit block (blocksize 64) and of its int8 row, so
// NF4/FP4 (absmax code 1.0, also after double quantization: the largest absmax is exact) and
// LLM.int8 (row scale) store it exactly.
void plant_outliers(const ModelConfig& c, const std::string& name, std::vector<float>& values) {
  if (c.outlier_channels.empty()) return;
  const int64_t h = c.hidden_size;
  if (name == "model.embed_tokens.weight") {
    for (int64_t token = 5; token < c.vocab_size; token += c.outlier_token_stride) {
      for (int64_t ch : c.outlier_channels) {
        values[static_cast<size_t>(token * h + ch)] = static_cast<float>(c.outlier_magnitude);
      }
    }
    return;
  }
  const std::string last = "model.layers." + std::to_string(c.num_layers - 1) + ".mlp.";
  if (name == last + "gate_proj.weight" || name == last + "up_proj.weight") {
    for (int64_t neuron : c.outlier_neurons) {
      for (int64_t ch : c.outlier_channels) {
        values[static_cast<size_t>(neuron * h + ch)] = static_cast<float>(c.outlier_weight);
      }
    }
  }
}

}  // namespace

std::vector<CheckpointTensor> checkpoint_layout(const ModelConfig& c) {
  std::vector<CheckpointTensor> out;
  out.push_back({"model.embed_tokens.weight", {c.vocab_size, c.hidden_size}, false});
  const std::vector<LinearSpec> linears = linear_specs(c);
  size_t next = 0;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    out.push_back({p + "input_layernorm.weight", {c.hidden_size}, true});
    for (int k = 0; k < 7; ++k, ++next) {
      if (k == 4) out.push_back({p + "post_attention_layernorm.weight", {c.hidden_size}, true});
      const LinearSpec& s = linears[next];
      out.push_back({s.name + ".weight", {s.out_features, s.in_features}, false});
    }
  }
  out.push_back({"model.norm.weight", {c.hidden_size}, true});
  out.push_back({"lm_head.weight", {c.vocab_size, c.hidden_size}, false});
  return out;
}

void write_checkpoint(const std::string& path, const ModelConfig& config, at::ScalarType dtype,
                      uint64_t seed) {
  const std::string st = st_dtype(dtype);
  // Uniform on [-b, b) has standard deviation b / sqrt(3).
  const double bound = config.init_std * std::sqrt(3.0);
  kernels::StFile file;
  file.metadata["format"] = "pt";
  file.metadata["qlc_model"] = config.name;
  file.metadata["qlc_seed"] = std::to_string(seed);
  std::vector<float> values;
  for (const CheckpointTensor& t : checkpoint_layout(config)) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    values.resize(static_cast<size_t>(n));
    if (t.is_norm) {
      std::fill(values.begin(), values.end(), 1.0f);
    } else {
      SplitMix64 rng(stream_seed(seed, t.name));
      for (float& v : values) v = static_cast<float>(rng.uniform_symmetric(bound));
      plant_outliers(config, t.name, values);
    }
    // Rounded to the file's dtype by LibTorch's conversion (round to nearest even).
    const at::Tensor typed =
        at::from_blob(values.data(), t.shape, at::TensorOptions().dtype(at::kFloat)).to(dtype);
    kernels::StTensor entry;
    entry.dtype = st;
    entry.shape = t.shape;
    const auto* bytes = static_cast<const uint8_t*>(typed.data_ptr());
    entry.data.assign(bytes, bytes + typed.numel() * static_cast<int64_t>(typed.element_size()));
    file.tensors.emplace(t.name, std::move(entry));
  }
  kernels::write_safetensors(path, file);
}

Checkpoint read_checkpoint(const std::string& path, const ModelConfig& config) {
  const kernels::StFile file = kernels::read_safetensors(path);
  const std::vector<CheckpointTensor> layout = checkpoint_layout(config);
  std::set<std::string> expected;
  for (const CheckpointTensor& t : layout) expected.insert(t.name);
  for (const auto& entry : file.tensors) {
    if (expected.count(entry.first) == 0) {
      fail(path, "unexpected tensor '" + entry.first + "' for model '" + config.name +
                     "' (a checkpoint of another model?)");
    }
  }
  Checkpoint out;
  std::string file_dtype;
  for (const CheckpointTensor& t : layout) {
    const kernels::StTensor& st = file.at(t.name);  // throws naming the file and what it holds
    at::ScalarType dtype;
    if (st.dtype == "F32") {
      dtype = at::kFloat;
    } else if (st.dtype == "F16") {
      dtype = at::kHalf;
    } else if (st.dtype == "BF16") {
      dtype = at::kBFloat16;
    } else {
      fail(path, "tensor '" + t.name + "' has dtype " + st.dtype + "; expected F32, F16 or BF16");
    }
    if (file_dtype.empty()) file_dtype = st.dtype;
    if (st.dtype != file_dtype) {
      fail(path, "tensor '" + t.name + "' is " + st.dtype + " but the checkpoint's other tensors are " +
                     file_dtype);
    }
    if (st.shape != t.shape) {
      fail(path, "tensor '" + t.name + "' has shape " + shape_string(st.shape) + " but model '" +
                     config.name + "' expects " + shape_string(t.shape));
    }
    at::Tensor tensor = at::empty(t.shape, at::TensorOptions().dtype(dtype));
    const size_t bytes = static_cast<size_t>(tensor.numel()) * tensor.element_size();
    if (st.data.size() != bytes) {
      fail(path, "tensor '" + t.name + "' holds " + std::to_string(st.data.size()) +
                     " bytes; expected " + std::to_string(bytes));
    }
    if (bytes > 0) std::memcpy(tensor.data_ptr(), st.data.data(), bytes);
    out.emplace(t.name, std::move(tensor));
  }
  return out;
}

}  // namespace qlc::harness
