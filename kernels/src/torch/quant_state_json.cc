#include "quant_state_json.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

namespace qlc::kernels::detail {
namespace {

// nlohmann's shortest round-trip digits match Python's repr except in [1e15, 1e16), which Python
// writes positionally ("1000000000000000.0") and nlohmann as "1e+15".
std::string expand_e15(const std::string& s) {
  const size_t e = s.find("e+15");
  if (e == std::string::npos) return s;
  std::string sign, mantissa = s.substr(0, e);
  if (!mantissa.empty() && mantissa[0] == '-') {
    sign = "-";
    mantissa.erase(0, 1);
  }
  std::string digits;
  for (char c : mantissa)
    if (c != '.') digits.push_back(c);
  // 1 integer digit + 15 from the exponent; digits beyond those are the fraction.
  if (digits.size() > 16) return sign + digits.substr(0, 16) + "." + digits.substr(16);
  digits.resize(16, '0');
  return sign + digits + ".0";
}

// Python's json accepts the bare literals NaN, Infinity and -Infinity; nlohmann does not. Quote
// them outside strings so that they parse, and read them back as strings.
std::string quote_python_literals(const std::string& text) {
  std::string out;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out.push_back(c);
      if (c == '\\' && i + 1 < text.size()) {
        out.push_back(text[++i]);
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') in_string = true;
    bool replaced = false;
    for (const char* word : {"-Infinity", "Infinity", "NaN"}) {
      const std::string w(word);
      if (text.compare(i, w.size(), w) == 0) {
        out += '"' + w + '"';
        i += w.size() - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out.push_back(c);
  }
  return out;
}

const nlohmann::json& entry(const nlohmann::json& j, const char* key) {
  if (!j.contains(key)) throw std::runtime_error(std::string("packed quant_state has no \"") + key + "\"");
  return j.at(key);
}

std::string string_entry(const nlohmann::json& j, const char* key) {
  const nlohmann::json& v = entry(j, key);
  if (!v.is_string()) throw std::runtime_error(std::string("packed quant_state \"") + key + "\" is not a string");
  return v.get<std::string>();
}

int64_t int_entry(const nlohmann::json& j, const char* key) {
  const nlohmann::json& v = entry(j, key);
  if (!v.is_number_integer()) throw std::runtime_error(std::string("packed quant_state \"") + key + "\" is not an integer");
  return v.get<int64_t>();
}

double float_entry(const nlohmann::json& j, const char* key) {
  const nlohmann::json& v = entry(j, key);
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "NaN") return std::numeric_limits<double>::quiet_NaN();
    if (s == "Infinity") return std::numeric_limits<double>::infinity();
    if (s == "-Infinity") return -std::numeric_limits<double>::infinity();
  }
  throw std::runtime_error(std::string("packed quant_state \"") + key + "\" is not a number");
}

}  // namespace

std::string python_float_repr(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  return expand_e15(nlohmann::json(value).dump());
}

std::string write_quant_state_json(const QuantStateMeta& meta) {
  // bitsandbytes' dict order and json.dumps' separators (", " and ": ").
  std::string s = "{\"quant_type\": \"" + meta.quant_type + "\", \"blocksize\": " +
                  std::to_string(meta.blocksize) + ", \"dtype\": \"" + meta.dtype + "\", \"shape\": [";
  for (size_t i = 0; i < meta.shape.size(); ++i) s += (i ? ", " : "") + std::to_string(meta.shape[i]);
  s += "]";
  if (meta.nested) {
    s += ", \"nested_blocksize\": " + std::to_string(meta.nested_blocksize) + ", \"nested_dtype\": \"" +
         meta.nested_dtype + "\", \"nested_offset\": " + python_float_repr(meta.nested_offset);
  }
  return s + "}";
}

QuantStateMeta parse_quant_state_json(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(quote_python_literals(text));
  } catch (const nlohmann::json::parse_error& e) {
    throw std::runtime_error(std::string("packed quant_state is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw std::runtime_error("packed quant_state is not a JSON object");
  QuantStateMeta meta;
  meta.quant_type = string_entry(j, "quant_type");
  meta.blocksize = int_entry(j, "blocksize");
  meta.dtype = string_entry(j, "dtype");
  const nlohmann::json& shape = entry(j, "shape");
  if (!shape.is_array()) throw std::runtime_error("packed quant_state \"shape\" is not a list");
  for (const nlohmann::json& d : shape) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0)
      throw std::runtime_error("packed quant_state \"shape\" holds " + d.dump() + ", not a size");
    meta.shape.push_back(d.get<int64_t>());
  }
  meta.nested = j.contains("nested_blocksize") || j.contains("nested_dtype") || j.contains("nested_offset");
  if (meta.nested) {
    meta.nested_blocksize = int_entry(j, "nested_blocksize");
    meta.nested_dtype = string_entry(j, "nested_dtype");
    meta.nested_offset = static_cast<float>(float_entry(j, "nested_offset"));  // torch.tensor(float(x))
  }
  return meta;
}

}  // namespace qlc::kernels::detail
