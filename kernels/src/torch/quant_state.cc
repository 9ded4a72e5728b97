// QuantState4: consistency checks and the safetensors form transformers uses for bitsandbytes
// 4-bit checkpoints (see quant_state.h for the keys).
#include "qlc/kernels/quant_state.h"

#include <ATen/ops/empty.h>

#include <cmath>
#include <cstdio>
#include <cstring>

#include "qlc/kernels/blockwise_4bit.h"
#include "qlc/kernels/double_quant.h"
#include "qlc/kernels/dynamic_map.h"
#include "qlc/kernels/tensor_api.h"
#include "quant_state_json.h"
#include "tensor_checks.h"

namespace qlc::kernels {
namespace {

using detail::dtype_name;
using detail::shape_string;

const char* torch_dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return "float32";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    default: return "";
  }
}

// "" when `t` is a defined `dtype` tensor of `numel` elements on `device`, else what is wrong.
std::string tensor_problem(const char* arg, const at::Tensor& t, at::ScalarType dtype, int64_t numel,
                           const at::Device& device) {
  const std::string a(arg);
  if (!t.defined()) return a + " is undefined";
  if (t.scalar_type() != dtype) return a + " has dtype " + dtype_name(t.scalar_type()) + ", expected " + dtype_name(dtype);
  if (t.numel() != numel)
    return a + " has " + std::to_string(t.numel()) + " elements, expected " + std::to_string(numel);
  if (t.device() != device) return a + " is on " + t.device().str() + " but packed is on " + device.str();
  return "";
}

[[noreturn]] void file_error(const StFile& file, const std::string& name, const std::string& what) {
  throw SafetensorsError(file.source + ": 4-bit weight '" + name + "': " + what);
}

const StTensor& need(const StFile& file, const std::string& name, const std::string& key,
                     const std::string& dtype, int64_t numel) {
  const auto it = file.tensors.find(key);
  if (it == file.tensors.end()) file_error(file, name, "missing tensor '" + key + "'");
  const StTensor& t = it->second;
  if (t.dtype != dtype) file_error(file, name, "'" + key + "' has dtype " + t.dtype + ", expected " + dtype);
  if (t.numel() != numel)
    file_error(file, name, "'" + key + "' has " + std::to_string(t.numel()) + " elements, expected " +
                               std::to_string(numel));
  return t;
}

// The bytes of `t` as a flat tensor of `dtype` (sized by bytes: packed weights may be stored in
// another dtype than they are read as).
at::Tensor to_tensor(const StTensor& t, at::ScalarType dtype) {
  const int64_t count = static_cast<int64_t>(t.data.size()) / static_cast<int64_t>(c10::elementSize(dtype));
  at::Tensor out = at::empty({count}, at::TensorOptions().dtype(dtype));
  if (!t.data.empty()) std::memcpy(out.data_ptr(), t.data.data(), t.data.size());
  return out;
}

StTensor to_st(const at::Tensor& t, const std::string& dtype) {
  const at::Tensor c = t.to(at::kCPU).contiguous();
  StTensor out;
  out.dtype = dtype;
  out.shape = c.sizes().vec();
  const auto* bytes = static_cast<const uint8_t*>(c.data_ptr());
  out.data.assign(bytes, bytes + c.numel() * static_cast<int64_t>(c.element_size()));
  return out;
}

std::string float_text(float v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.9g", v);
  return buffer;
}

// A stored code table must be the one bitsandbytes uses for it, up to its last bits: the tables
// are built with LibTorch fp32 arithmetic (torch.linspace for the dynamic map) whose rounding varies
// between LibTorch builds (42 of the 256 signed-map entries differ by one ulp between the goldens
// and torch 2.13 on AVX2). 1e-6 relative is 8 ulps; zero entries must be zero.
void check_table(const StFile& file, const std::string& name, const std::string& key, const StTensor& t,
                 const float* expected, int64_t n, const char* what) {
  for (int64_t i = 0; i < n; ++i) {
    const float got = t.as<float>()[i], want = expected[i];
    if (!(std::abs(got - want) <= 1e-6f * std::abs(want)))
      file_error(file, name, "'" + key + "' is not " + what + " (entry " + std::to_string(i) + " is " +
                                 float_text(got) + ", expected " + float_text(want) + " within 1e-6 relative)");
  }
}

void check_finite_values(const StFile& file, const std::string& name, const std::string& key, const StTensor& t) {
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(t.as<float>()[i]))
      file_error(file, name, "'" + key + "' holds a NaN/Inf at index " + std::to_string(i));
}

}  // namespace

std::string quant_state_problem(const QuantState4& s) {
  if (!s.packed.defined()) return "packed is undefined";
  const at::Device device = s.packed.device();
  for (int64_t d : s.shape)
    if (d < 0) return "shape " + shape_string(s.shape) + " has a negative size";
  if (!is_supported_blocksize(s.blocksize))
    return "blocksize " + std::to_string(s.blocksize) + " is not a power of two from 32 to 4096";
  if (*torch_dtype_name(s.dtype) == '\0')
    return "dtype " + dtype_name(s.dtype) + " is not fp32, fp16 or bf16";
  const int64_t n = s.numel();
  const int64_t blocks = num_blocks(n, s.blocksize);
  std::string p = tensor_problem("packed", s.packed, at::kByte, packed_bytes_4bit(n), device);
  if (p.empty()) p = tensor_problem("code", s.code, at::kFloat, 16, device);
  if (p.empty()) p = tensor_problem("absmax", s.absmax, s.nested ? at::kByte : at::kFloat, blocks, device);
  if (!p.empty()) return p + " (shape " + shape_string(s.shape) + ", blocksize " + std::to_string(s.blocksize) + ")";
  if (!s.nested) return "";
  const NestedAbsmax& nested = *s.nested;
  if (nested.blocksize != kDoubleQuantBlocksize)
    return "nested blocksize " + std::to_string(nested.blocksize) + " is not supported, expected 256";
  p = tensor_problem("nested absmax2", nested.absmax2, at::kFloat, num_blocks(blocks, nested.blocksize), device);
  if (p.empty()) p = tensor_problem("nested code", nested.code, at::kFloat, 256, device);
  if (p.empty() && blocks > 0 && !std::isfinite(nested.offset))
    p = "nested offset is " + std::to_string(nested.offset) + ", expected a finite mean";
  return p;
}

std::string quant_state_json(const QuantState4& state) {
  detail::QuantStateMeta meta;
  meta.quant_type = to_string(state.quant_type);
  meta.blocksize = state.blocksize;
  meta.dtype = torch_dtype_name(state.dtype);
  meta.shape = state.shape;
  if (state.nested) {
    meta.nested = true;
    meta.nested_blocksize = state.nested->blocksize;
    meta.nested_dtype = "float32";
    meta.nested_offset = state.nested->offset;
  }
  return detail::write_quant_state_json(meta);
}

void add_quant_state(StFile& file, const std::string& name, const QuantState4& state) {
  const std::string problem = quant_state_problem(state);
  if (!problem.empty()) throw KernelInputError("add_quant_state: state for '" + name + "': " + problem);
  file.tensors[name] = to_st(state.packed, "U8");
  file.tensors[name + ".absmax"] = to_st(state.absmax, state.nested ? "U8" : "F32");
  file.tensors[name + ".quant_map"] = to_st(state.code, "F32");
  if (state.nested) {
    file.tensors[name + ".nested_absmax"] = to_st(state.nested->absmax2, "F32");
    file.tensors[name + ".nested_quant_map"] = to_st(state.nested->code, "F32");
  }
  const std::string json = quant_state_json(state);
  file.tensors[name + ".quant_state.bitsandbytes__" + to_string(state.quant_type)] =
      make_st_tensor("U8", {static_cast<int64_t>(json.size())}, json.data(), static_cast<int64_t>(json.size()));
}

QuantState4 quant_state_from_safetensors(const StFile& file, const std::string& name) {
  // The packed JSON: exactly one `<name>.quant_state.bitsandbytes__<type>`.
  const std::string prefix = name + ".quant_state.bitsandbytes__";
  std::string json_key;
  for (const auto& kv : file.tensors) {
    if (kv.first.compare(0, prefix.size(), prefix) != 0) continue;
    if (!json_key.empty()) file_error(file, name, "two packed quant states: '" + json_key + "' and '" + kv.first + "'");
    json_key = kv.first;
  }
  if (json_key.empty()) {
    if (file.tensors.count(name) == 0) file_error(file, name, "no such tensor in the file");
    file_error(file, name, "missing '" + prefix + "nf4' (or fp4): not a bitsandbytes 4-bit weight");
  }
  const StTensor& json_tensor = file.tensors.at(json_key);
  if (json_tensor.dtype != "U8") file_error(file, name, "'" + json_key + "' has dtype " + json_tensor.dtype + ", expected U8");
  detail::QuantStateMeta meta;
  try {
    meta = detail::parse_quant_state_json(std::string(json_tensor.data.begin(), json_tensor.data.end()));
  } catch (const std::runtime_error& e) {
    file_error(file, name, "'" + json_key + "': " + e.what());
  }
  const std::string key_type = json_key.substr(prefix.size());
  if (meta.quant_type != key_type)
    file_error(file, name, "'" + json_key + "' says quant_type \"" + meta.quant_type + "\"");

  QuantState4 s;
  try {
    s.quant_type = quant_type4_from_string(meta.quant_type);
  } catch (const std::invalid_argument& e) {
    file_error(file, name, e.what());
  }
  s.blocksize = meta.blocksize;
  if (!is_supported_blocksize(s.blocksize))
    file_error(file, name, "blocksize " + std::to_string(s.blocksize) + " is not a power of two from 32 to 4096");
  if (meta.dtype == "float32") s.dtype = at::kFloat;
  else if (meta.dtype == "float16") s.dtype = at::kHalf;
  else if (meta.dtype == "bfloat16") s.dtype = at::kBFloat16;
  else file_error(file, name, "dtype \"" + meta.dtype + "\" is not float32, float16 or bfloat16");
  s.shape = meta.shape;
  const int64_t n = s.numel();
  const int64_t blocks = num_blocks(n, s.blocksize);

  // Packed codes: any storage dtype (quant_storage), read as bytes.
  const StTensor& packed = file.at(name);
  if (static_cast<int64_t>(packed.data.size()) != packed_bytes_4bit(n))
    file_error(file, name, "'" + name + "' holds " + std::to_string(packed.data.size()) + " bytes; shape " +
                               shape_string(s.shape) + " needs " + std::to_string(packed_bytes_4bit(n)));
  s.packed = to_tensor(packed, at::kByte).view({packed_bytes_4bit(n), 1});

  const StTensor& map = need(file, name, name + ".quant_map", "F32", 16);
  check_table(file, name, name + ".quant_map", map, codebook4(s.quant_type).code, 16,
              ("bitsandbytes' " + meta.quant_type + " code book").c_str());
  s.code = to_tensor(map, at::kFloat);

  const bool has_nested_tensors = file.tensors.count(name + ".nested_absmax") > 0;
  if (has_nested_tensors != meta.nested)
    file_error(file, name, meta.nested ? "the packed quant state names nested_* entries but '" + name + ".nested_absmax' is missing"
                                       : "'" + name + ".nested_absmax' is present but the packed quant state has no nested_* entries");
  if (!meta.nested) {
    const StTensor& absmax = need(file, name, name + ".absmax", "F32", blocks);
    check_finite_values(file, name, name + ".absmax", absmax);
    s.absmax = to_tensor(absmax, at::kFloat);
  } else {
    if (meta.nested_dtype != "float32") file_error(file, name, "nested_dtype \"" + meta.nested_dtype + "\" is not float32");
    if (meta.nested_blocksize != kDoubleQuantBlocksize)
      file_error(file, name, "nested_blocksize " + std::to_string(meta.nested_blocksize) + " is not supported, expected 256");
    if (blocks > 0 && !std::isfinite(meta.nested_offset)) file_error(file, name, "nested_offset is not finite");
    s.absmax = to_tensor(need(file, name, name + ".absmax", "U8", blocks), at::kByte);
    NestedAbsmax nested;
    nested.blocksize = meta.nested_blocksize;
    nested.offset = meta.nested_offset;
    const StTensor& absmax2 = need(file, name, name + ".nested_absmax", "F32", num_blocks(blocks, nested.blocksize));
    check_finite_values(file, name, name + ".nested_absmax", absmax2);
    nested.absmax2 = to_tensor(absmax2, at::kFloat);
    const StTensor& map8 = need(file, name, name + ".nested_quant_map", "F32", 256);
    check_table(file, name, name + ".nested_quant_map", map8, dynamic_map(true).code, 256,
                "bitsandbytes' signed dynamic map");
    nested.code = to_tensor(map8, at::kFloat);
    s.nested = std::move(nested);
  }
  const std::string problem = quant_state_problem(s);
  if (!problem.empty()) file_error(file, name, problem);
  return s;
}

void save_quant_state(const std::string& path, const QuantState4& state, const std::string& name) {
  StFile file;
  file.metadata["format"] = "pt";  // what transformers' save_pretrained writes
  add_quant_state(file, name, state);
  write_safetensors(path, file);
}

QuantState4 load_quant_state(const std::string& path, const std::string& name) {
  return quant_state_from_safetensors(read_safetensors(path), name);
}

}  // namespace qlc::kernels
