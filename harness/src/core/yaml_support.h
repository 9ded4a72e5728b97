// yaml-cpp helpers shared by the matrix and rules parsers (private to qlc_harness_core).
#pragma once

#include <yaml-cpp/yaml.h>

#include <set>
#include <string>
#include <vector>

#include "yaml_guard.h"

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

// Parses a whole file's text and returns its root, which must be a mapping: `kind` ("matrix",
// "rules") names the file and `key` the key it is expected to hold. Errors go to fail(mark,
// message), which must throw.
template <typename Fail>
YAML::Node load_root_mapping(const std::string& text, const std::string& kind,
                             const std::string& key, Fail&& fail) {
  YAML::Node root;
  if (const auto at = find_control_character(text)) {
    YAML::Mark mark;
    mark.line = at->line;
    mark.column = at->column;
    fail(mark, "a control character (YAML files hold printable text, tabs and line breaks only)");
  }
  if (const auto at = find_block_flow_entry(text)) {
    YAML::Mark mark;
    mark.line = at->line;
    mark.column = at->column;
    fail(mark, "',' where a value starts (the YAML reader would never finish on some of these: "
               "inside [ ] or { }, put the ',' at the end of the line before; elsewhere YAML does "
               "not allow it: quote the value, or remove the ',')");
  }
  TextPosition stuck;
  if (!yaml_reader_finishes(text, &stuck)) {
    YAML::Mark mark;
    mark.line = stuck.line;
    mark.column = stuck.column;
    fail(mark, "the YAML reader (yaml-cpp 0.7) never finishes on this text, a fault of it on "
               "some malformed YAML: check the syntax here");
  }
  try {
    // Every document is read so that a second one is an error, not silently ignored.
    const std::vector<YAML::Node> documents = YAML::LoadAll(text);
    if (documents.size() > 1) {
      fail(documents[1].Mark(), "a second YAML document ('---'): a " + kind +
                                    " file holds one document");
    }
    if (!documents.empty()) root = documents[0];
  } catch (const YAML::ParserException& e) {
    fail(e.mark, "YAML syntax error: " + e.msg);
  } catch (const YAML::Exception& e) {
    fail(e.mark, "YAML error: " + e.msg);
  }
  if (!root.IsMap()) {
    fail(root.Mark(), root.IsNull()
                          ? "empty " + kind + " file (expected a mapping with key '" + key + "')"
                          : "expected a mapping with key '" + key + "' at the top level");
  }
  return root;
}

}  // namespace qlc::harness::yaml_support
