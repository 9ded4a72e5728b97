// The packed JSON of a bitsandbytes QuantState (`quant_state.bitsandbytes__<type>`): written byte
// for byte as Python's json.dumps writes bitsandbytes' dict, read leniently (any key order and
// spacing, Python's NaN / Infinity literals). No LibTorch here.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace qlc::kernels::detail {

struct QuantStateMeta {
  std::string quant_type;  // "nf4" / "fp4"
  int64_t blocksize = 0;
  std::string dtype;       // torch's name without "torch.": "float32", "float16", "bfloat16"
  std::vector<int64_t> shape;
  bool nested = false;     // the three nested_* entries below are present
  int64_t nested_blocksize = 0;
  std::string nested_dtype;
  float nested_offset = 0.0f;
};

// Python's repr of a float, as json.dumps writes it (NaN, Infinity and -Infinity included).
std::string python_float_repr(double value);

std::string write_quant_state_json(const QuantStateMeta& meta);
// Throws std::runtime_error naming the missing or malformed entry.
QuantStateMeta parse_quant_state_json(const std::string& text);

}  // namespace qlc::kernels::detail
