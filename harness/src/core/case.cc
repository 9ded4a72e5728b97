#include "qlc/harness/case.h"

#include <stdexcept>

#include "enum_names.h"

namespace qlc::harness {

std::string to_string(WeightFormat v) {
  switch (v) {
    case WeightFormat::kNone: return "none";
    case WeightFormat::kNf4: return "nf4";
    case WeightFormat::kFp4: return "fp4";
    case WeightFormat::kInt8: return "int8";
  }
  throw std::logic_error("WeightFormat out of range");
}

std::string to_string(Dtype v) {
  switch (v) {
    case Dtype::kFp32: return "fp32";
    case Dtype::kFp16: return "fp16";
    case Dtype::kBf16: return "bf16";
  }
  throw std::logic_error("Dtype out of range");
}

std::string to_string(OptimizerKind v) {
  switch (v) {
    case OptimizerKind::kAdamWFp32: return "adamw-fp32";
    case OptimizerKind::kAdamWParamDtype: return "adamw-param";
    case OptimizerKind::kAdamW8bit: return "adamw8bit";
    case OptimizerKind::kPagedAdamW8bit: return "paged-adamw8bit";
  }
  throw std::logic_error("OptimizerKind out of range");
}

WeightFormat weight_format_from_string(const std::string& s) {
  return detail::parse_enum(kAllWeightFormats, s, "weight format");
}

Dtype dtype_from_string(const std::string& s) {
  return detail::parse_enum(kAllDtypes, s, "dtype");
}

OptimizerKind optimizer_from_string(const std::string& s) {
  return detail::parse_enum(kAllOptimizers, s, "optimizer");
}

bool is_4bit(WeightFormat v) { return v == WeightFormat::kNf4 || v == WeightFormat::kFp4; }

bool is_valid_device(const std::string& device) {
  if (device == "cpu" || device == "auto") return true;
  const std::string prefix = "cuda:";
  if (device.compare(0, prefix.size(), prefix) != 0) return false;
  const std::string index = device.substr(prefix.size());
  // One spelling per device keeps ids unique: no "cuda:01", no "cuda" without an index.
  if (index.empty() || index.size() > 4) return false;
  if (index.size() > 1 && index[0] == '0') return false;
  for (char c : index) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

std::string Case::id() const {
  std::string weights_part = to_string(weights);
  if (double_quant && is_4bit(weights)) weights_part += "-dq";
  return device + "/" + weights_part + "/param=" + to_string(param_dtype) +
         "/compute=" + to_string(compute_dtype) + "/optim=" + to_string(optimizer);
}

namespace {

constexpr const char* kIdShape =
    "<device>/<weights>[-dq]/param=<dtype>/compute=<dtype>/optim=<optimizer>";

[[noreturn]] void bad_id(const std::string& id, const std::string& why) {
  throw std::invalid_argument("bad case id '" + id + "': " + why + " (expected " + kIdShape + ")");
}

// The value after "key=" in `part`, or a bad-id error naming the part.
std::string keyed_value(const std::string& id, const std::string& part, const std::string& key) {
  const std::string prefix = key + "=";
  if (part.compare(0, prefix.size(), prefix) != 0) {
    bad_id(id, "part '" + part + "' should start with '" + prefix + "'");
  }
  return part.substr(prefix.size());
}

}  // namespace

Case Case::from_id(const std::string& id) {
  std::vector<std::string> parts;
  std::string::size_type start = 0;
  while (true) {
    const auto slash = id.find('/', start);
    const auto length = slash == std::string::npos ? std::string::npos : slash - start;
    parts.push_back(id.substr(start, length));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  if (parts.size() != 5) bad_id(id, std::to_string(parts.size()) + " parts instead of 5");

  Case c;
  if (!is_valid_device(parts[0])) {
    bad_id(id, "unknown device '" + parts[0] + "' (expected cpu, cuda:N, auto)");
  }
  c.device = parts[0];

  // Enum errors already name the bad value and the valid ones; add which id they came from.
  auto parse = [&id](auto from_string, const std::string& text) {
    try {
      return from_string(text);
    } catch (const std::invalid_argument& e) {
      bad_id(id, e.what());
    }
  };
  std::string weights = parts[1];
  const std::string dq_suffix = "-dq";
  if (weights.size() > dq_suffix.size() &&
      weights.compare(weights.size() - dq_suffix.size(), dq_suffix.size(), dq_suffix) == 0) {
    weights.resize(weights.size() - dq_suffix.size());
    c.double_quant = true;
  }
  c.weights = parse(weight_format_from_string, weights);
  if (c.double_quant && !is_4bit(c.weights)) {
    bad_id(id, "'-dq' (double quantization) applies to nf4/fp4 only, not " + weights);
  }
  c.param_dtype = parse(dtype_from_string, keyed_value(id, parts[2], "param"));
  c.compute_dtype = parse(dtype_from_string, keyed_value(id, parts[3], "compute"));
  c.optimizer = parse(optimizer_from_string, keyed_value(id, parts[4], "optim"));
  return c;
}

std::vector<std::pair<std::string, std::string>> Case::axes() const {
  return {
      {"device", device},
      {"weights", to_string(weights)},
      {"double_quant", double_quant && is_4bit(weights) ? "true" : "false"},
      {"param_dtype", to_string(param_dtype)},
      {"compute_dtype", to_string(compute_dtype)},
      {"optimizer", to_string(optimizer)},
  };
}

}  // namespace qlc::harness
