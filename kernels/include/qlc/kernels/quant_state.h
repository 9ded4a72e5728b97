// A 4-bit quantized weight and everything needed to restore it (bitsandbytes' QuantState), and its
// safetensors form under the keys transformers writes for bitsandbytes 4-bit checkpoints:
//
//   <name>                                 U8  [(n+1)/2, 1]  packed codes (any dtype is read as bytes)
//   <name>.absmax                          F32 [blocks]      or U8 [blocks] with double quantization
//   <name>.quant_map                       F32 [16]          the code book
//   <name>.nested_absmax                   F32 [ceil(blocks/256)]   (double quantization only)
//   <name>.nested_quant_map                F32 [256]                (double quantization only)
//   <name>.quant_state.bitsandbytes__nf4   U8  [len]  UTF-8 JSON, as bitsandbytes' pack_dict_to_tensor:
//       {"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [out, in]
//        [, "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": <mean>]}
//
// <name> is the parameter's full name ("model.layers.0.mlp.down_proj.weight"), "weight" by default.
// Reading checks everything the file claims against everything else it holds and names the file and
// the problem in a SafetensorsError.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qlc/kernels/codebook_4bit.h"
#include "qlc/kernels/safetensors.h"

namespace qlc::kernels {

// Double quantization of the absmax values: absmax[i] = nested_code[q[i]] * absmax2[i / 256] + offset.
struct NestedAbsmax {
  at::Tensor absmax2;       // fp32 [ceil(blocks / blocksize)]: "nested_absmax"
  at::Tensor code;          // fp32 [256]: "nested_quant_map", bitsandbytes' signed dynamic map as
                            // built by the LibTorch that wrote it (last bits vary); used to restore
  float offset = 0.0f;      // "nested_offset": mean of the absmax values (NaN for an empty weight)
  int64_t blocksize = 256;  // "nested_blocksize"
};

struct QuantState4 {
  at::Tensor packed;            // uint8 [(n+1)/2, 1], two codes per byte, first in the high nibble
  at::Tensor absmax;            // fp32 [blocks]; uint8 codes [blocks] when `nested` is set
  at::Tensor code;              // fp32 [16]: "quant_map"
  std::vector<int64_t> shape;   // the original weight's shape
  at::ScalarType dtype = at::kFloat;  // the original weight's dtype (fp32, fp16 or bf16)
  int64_t blocksize = 64;
  QuantType4 quant_type = QuantType4::kNf4;
  std::optional<NestedAbsmax> nested;

  int64_t numel() const;
};

// What is wrong with `state` (inconsistent sizes, dtypes, devices, code books, blocksizes), or an
// empty string when nothing is. The tensor API and the reader turn it into their own errors.
std::string quant_state_problem(const QuantState4& state);

// The packed JSON bitsandbytes writes, byte for byte (Python's json.dumps of the same dict).
std::string quant_state_json(const QuantState4& state);

// Adds the state's tensors under transformers' keys for parameter `name` (tensors copied to CPU).
void add_quant_state(StFile& file, const std::string& name, const QuantState4& state);
// Reads parameter `name`'s state from a file (tensors on CPU); throws SafetensorsError.
QuantState4 quant_state_from_safetensors(const StFile& file, const std::string& name);

void save_quant_state(const std::string& path, const QuantState4& state,
                      const std::string& name = "weight");
QuantState4 load_quant_state(const std::string& path, const std::string& name = "weight");

}  // namespace qlc::kernels
