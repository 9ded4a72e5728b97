// The base model's checkpoint: deterministic weights written to a real .safetensors file under
// transformers' LLaMA names, and read back with every tensor checked against the model preset.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string>
#include <vector>

#include "training/model.h"

namespace qlc::harness {

struct CheckpointTensor {
  std::string name;            // "model.layers.0.mlp.up_proj.weight"
  std::vector<int64_t> shape;
  bool is_norm = false;        // RMSNorm weights start at 1.0; everything else is drawn
};

// Every tensor the model needs, in file order.
std::vector<CheckpointTensor> checkpoint_layout(const ModelConfig& config);

// Writes the weights for `seed` in `dtype` (fp32, fp16 or bf16) to `path`, atomically. Drawn and
// rounded independently of LibTorch (uniform with standard deviation init_std; norms 1.0), so the
// file's bytes depend only on (preset, dtype, seed).
void write_checkpoint(const std::string& path, const ModelConfig& config, at::ScalarType dtype,
                      uint64_t seed);

// Reads a checkpoint and checks it holds exactly the preset's tensors, with their shapes, in one
// float dtype. Every problem is a kernels::SafetensorsError naming the file and the tensor.
Checkpoint read_checkpoint(const std::string& path, const ModelConfig& config);

}  // namespace qlc::harness
