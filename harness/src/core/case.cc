#include "qlc/harness/case.h"

#include <iterator>
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

std::string to_string(Amp v) {
  switch (v) {
    case Amp::kNone: return "none";
    case Amp::kFp16: return "fp16";
    case Amp::kBf16: return "bf16";
  }
  throw std::logic_error("Amp out of range");
}

std::string to_string(AdapterDtype v) {
  switch (v) {
    case AdapterDtype::kPeft: return "peft";
    case AdapterDtype::kBase: return "base";
    case AdapterDtype::kModel: return "model";
  }
  throw std::logic_error("AdapterDtype out of range");
}

std::string to_string(GradCheckpointing v) {
  switch (v) {
    case GradCheckpointing::kOff: return "off";
    case GradCheckpointing::kReentrant: return "reentrant";
    case GradCheckpointing::kNonReentrant: return "non-reentrant";
  }
  throw std::logic_error("GradCheckpointing out of range");
}

std::string to_string(Stack v) {
  switch (v) {
    case Stack::kCurrent: return "current";
    case Stack::kBnb049: return "bnb-0.49";
    case Stack::kBnb046: return "bnb-0.46";
    case Stack::kBnb044: return "bnb-0.44";
    case Stack::kPeft011: return "peft-0.11";
    case Stack::kPeft05: return "peft-0.5";
  }
  throw std::logic_error("Stack out of range");
}

std::string to_string(ModelPreset v) {
  switch (v) {
    case ModelPreset::kTiny: return "tiny";
    case ModelPreset::kOutlier: return "outlier";
    case ModelPreset::kSmall: return "small";
    case ModelPreset::k7bLayer: return "7b-layer";
  }
  throw std::logic_error("ModelPreset out of range");
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

Amp amp_from_string(const std::string& s) { return detail::parse_enum(kAllAmps, s, "amp"); }

AdapterDtype adapter_dtype_from_string(const std::string& s) {
  return detail::parse_enum(kAllAdapterDtypes, s, "adapter dtype");
}

GradCheckpointing grad_checkpointing_from_string(const std::string& s) {
  return detail::parse_enum(kAllGradCheckpointing, s, "gradient checkpointing");
}

Stack stack_from_string(const std::string& s) {
  return detail::parse_enum(kAllStacks, s, "stack");
}

ModelPreset model_preset_from_string(const std::string& s) {
  return detail::parse_enum(kAllModelPresets, s, "model preset");
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

namespace {

std::string on_off(bool v) { return v ? "on" : "off"; }

bool on_off_from_string(const std::string& s, const char* what) {
  if (s == "on") return true;
  if (s == "off") return false;
  throw std::invalid_argument("unknown " + std::string(what) + " '" + s + "' (expected off, on)");
}

template <typename E, std::size_t N>
std::vector<std::string> names_of(const std::array<E, N>& all) {
  std::vector<std::string> out;
  for (E v : all) out.push_back(to_string(v));
  return out;
}

// The keyed axes after the weights part, in id order: (axis name, id key).
struct KeyedAxis {
  const char* name;
  const char* key;
};
constexpr KeyedAxis kKeyedAxes[] = {
    {"param_dtype", "param"},    {"compute_dtype", "compute"},     {"optimizer", "optim"},
    {"amp", "amp"},              {"adapter_dtype", "adapter"},     {"prepare_kbit", "kbit"},
    {"grad_checkpointing", "ckpt"}, {"stack", "stack"},            {"model", "model"},
};
constexpr std::size_t kCoreKeyedAxes = 3;  // param, compute, optim: the original five-part id

// The id spelling of an axis value (prepare_kbit: on/off, as in matrix files).
std::string axis_value(const Case& c, const std::string& name) {
  if (name == "device") return c.device;
  if (name == "weights") return to_string(c.weights);
  if (name == "double_quant") return c.double_quant && is_4bit(c.weights) ? "true" : "false";
  if (name == "param_dtype") return to_string(c.param_dtype);
  if (name == "compute_dtype") return to_string(c.compute_dtype);
  if (name == "optimizer") return to_string(c.optimizer);
  if (name == "amp") return to_string(c.amp);
  if (name == "adapter_dtype") return to_string(c.adapter_dtype);
  if (name == "prepare_kbit") return on_off(c.prepare_kbit);
  if (name == "grad_checkpointing") return to_string(c.grad_checkpointing);
  if (name == "stack") return to_string(c.stack);
  if (name == "model") return to_string(c.model);
  throw std::logic_error("unknown axis '" + name + "'");
}

}  // namespace

const std::vector<AxisInfo>& case_axes() {
  static const std::vector<AxisInfo> all = [] {
    std::vector<AxisInfo> v = {
        {"device", "", {"auto", "cpu", "cuda:N"}},
        {"weights", "", names_of(kAllWeightFormats)},
        {"double_quant", "", {"false", "true"}},
    };
    for (const KeyedAxis& k : kKeyedAxes) {
      const std::string name = k.name;
      std::vector<std::string> values;
      if (name == "param_dtype" || name == "compute_dtype") values = names_of(kAllDtypes);
      if (name == "optimizer") values = names_of(kAllOptimizers);
      if (name == "amp") values = names_of(kAllAmps);
      if (name == "adapter_dtype") values = names_of(kAllAdapterDtypes);
      if (name == "prepare_kbit") values = {"off", "on"};
      if (name == "grad_checkpointing") values = names_of(kAllGradCheckpointing);
      if (name == "stack") values = names_of(kAllStacks);
      if (name == "model") values = names_of(kAllModelPresets);
      v.push_back({name, k.key, values});
    }
    return v;
  }();
  return all;
}

void set_axis(Case& c, const std::string& name, const std::string& value) {
  if (name == "device") {
    if (!is_valid_device(value)) {
      throw std::invalid_argument("unknown device '" + value + "' (expected auto, cpu, cuda:N)");
    }
    c.device = value;
  } else if (name == "weights") {
    c.weights = weight_format_from_string(value);
  } else if (name == "double_quant") {
    if (value != "true" && value != "false") {
      throw std::invalid_argument("unknown double_quant '" + value + "' (expected false, true)");
    }
    c.double_quant = value == "true";
  } else if (name == "param_dtype") {
    c.param_dtype = dtype_from_string(value);
  } else if (name == "compute_dtype") {
    c.compute_dtype = dtype_from_string(value);
  } else if (name == "optimizer") {
    c.optimizer = optimizer_from_string(value);
  } else if (name == "amp") {
    c.amp = amp_from_string(value);
  } else if (name == "adapter_dtype") {
    c.adapter_dtype = adapter_dtype_from_string(value);
  } else if (name == "prepare_kbit") {
    c.prepare_kbit = on_off_from_string(value, "prepare_kbit");
  } else if (name == "grad_checkpointing") {
    c.grad_checkpointing = grad_checkpointing_from_string(value);
  } else if (name == "stack") {
    c.stack = stack_from_string(value);
  } else if (name == "model") {
    c.model = model_preset_from_string(value);
  } else {
    std::string valid;
    for (const AxisInfo& a : case_axes()) valid += (valid.empty() ? "" : ", ") + a.name;
    throw std::invalid_argument("unknown axis '" + name + "' (expected " + valid + ")");
  }
}

std::string Case::id() const {
  std::string out = device + "/" + to_string(weights);
  if (double_quant && is_4bit(weights)) out += "-dq";
  for (const KeyedAxis& k : kKeyedAxes) {
    out += std::string("/") + k.key + "=" + axis_value(*this, k.name);
  }
  return out;
}

namespace {

constexpr const char* kIdShape =
    "<device>/<weights>[-dq]/param=<dtype>/compute=<dtype>/optim=<optimizer>, then "
    "/amp=/adapter=/kbit=/ckpt=/stack=/model= (all six or none)";

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
  const std::size_t full = 2 + std::size(kKeyedAxes), core = 2 + kCoreKeyedAxes;
  if (parts.size() != full && parts.size() != core) {
    bad_id(id, std::to_string(parts.size()) + " parts instead of " + std::to_string(full) +
                   " (or " + std::to_string(core) + " for an id of the original core)");
  }

  Case c;
  if (!is_valid_device(parts[0])) {
    bad_id(id, "unknown device '" + parts[0] + "' (expected cpu, cuda:N, auto)");
  }
  c.device = parts[0];

  std::string weights = parts[1];
  const std::string dq_suffix = "-dq";
  if (weights.size() > dq_suffix.size() &&
      weights.compare(weights.size() - dq_suffix.size(), dq_suffix.size(), dq_suffix) == 0) {
    weights.resize(weights.size() - dq_suffix.size());
    c.double_quant = true;
  }
  // Enum errors already name the bad value and the valid ones; add which id they came from.
  try {
    c.weights = weight_format_from_string(weights);
  } catch (const std::invalid_argument& e) {
    bad_id(id, e.what());
  }
  if (c.double_quant && !is_4bit(c.weights)) {
    bad_id(id, "'-dq' (double quantization) applies to nf4/fp4 only, not " + weights);
  }
  for (std::size_t i = 2; i < parts.size(); ++i) {
    const KeyedAxis& k = kKeyedAxes[i - 2];
    try {
      set_axis(c, k.name, keyed_value(id, parts[i], k.key));
    } catch (const std::invalid_argument& e) {
      const std::string what = e.what();
      if (what.rfind("bad case id", 0) == 0) throw;
      bad_id(id, what);
    }
  }
  return c;
}

std::vector<std::pair<std::string, std::string>> Case::axes() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const AxisInfo& a : case_axes()) out.emplace_back(a.name, axis_value(*this, a.name));
  return out;
}

}  // namespace qlc::harness
