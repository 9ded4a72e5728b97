// yaml-cpp helpers shared by the matrix and rules parsers (private to qlc_harness_core).
#pragma once

#include <yaml-cpp/yaml.h>

#include <set>
#include <string>

namespace qlc::harness::yaml_support {

// Where to point for a value: yaml-cpp places an empty value at the next token, possibly lines
// later, so point at its key instead.
inline YAML::Mark value_mark(const YAML::Node& key, const YAML::Node& value) {
  return value.IsNull() ? key.Mark() : value.Mark();
}

// Calls fn(key, value, key_text) for each entry of a mapping, rejecting non-scalar and repeated
// keys through fail(mark, message), which must throw (yaml-cpp keeps both copies of a repeated
// key; which one wins would be a guess).
template <typename Fail, typename Fn>
void for_each_key(const YAML::Node& map, Fail&& fail, Fn&& fn) {
  std::set<std::string> seen;
  // Copies, not references: yaml-cpp's iterator hands out a temporary pair.
  for (const auto& entry : map) {
    const YAML::Node key = entry.first;
    const YAML::Node value = entry.second;
    if (!key.IsScalar()) fail(key.Mark(), "expected a plain key");
    const std::string k = key.Scalar();
    if (!seen.insert(k).second) fail(key.Mark(), "duplicate key '" + k + "'");
    fn(key, value, k);
  }
}

}  // namespace qlc::harness::yaml_support
