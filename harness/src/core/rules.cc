#include "qlc/harness/rules.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>
#include <utility>

#include "yaml_support.h"

namespace qlc::harness {
namespace {

using yaml_support::value_mark;

constexpr const char* kRuleKeys = "id, when, predict, why, detect, source, fix";
constexpr const char* kDeviceFactKeys =
    "device_type, libtorch_below, libtorch_at_least, compute_capability_below, "
    "compute_capability_at_least";

// Every case axis but the device (rules are about causes, fixes never move a case).
bool is_axis(const std::string& key) {
  if (key == "device") return false;
  for (const AxisInfo& a : case_axes()) {
    if (a.name == key) return true;
  }
  return false;
}

std::string axis_keys() {
  std::string out;
  for (const AxisInfo& a : case_axes()) {
    if (a.name != "device") out += (out.empty() ? "" : ", ") + a.name;
  }
  return out;
}

std::string condition_keys() { return axis_keys() + ", " + kDeviceFactKeys; }

// Validation uses set_axis too, so that what parses is exactly what apply_fix can apply.
void check_axis_value(const std::string& axis, const std::string& value) {
  if (!is_axis(axis)) {
    throw std::invalid_argument("unknown axis '" + axis + "' (expected " + axis_keys() + ")");
  }
  Case scratch;
  set_axis(scratch, axis, value);
}

// Validates a condition value (an axis value or a device type).
void check_value(const std::string& key, const std::string& value) {
  if (key == "device_type") {
    if (value != "cpu" && value != "cuda") {
      throw std::invalid_argument("unknown device type '" + value + "' (expected cpu, cuda)");
    }
    return;
  }
  check_axis_value(key, value);
}

// Every axis condition accepts the case's value. Case::axes() spells double_quant as id() and ==
// see it (false for none/int8), so equal cases match the same rules.
bool axes_hold(const std::map<std::string, std::vector<std::string>>& axes, const Case& c) {
  const auto values = c.axes();
  for (const auto& [axis, accepted] : axes) {
    const auto it = std::find_if(values.begin(), values.end(),
                                 [&axis = axis](const auto& kv) { return kv.first == axis; });
    if (it == values.end()) return false;
    if (std::find(accepted.begin(), accepted.end(), it->second) == accepted.end()) return false;
  }
  return true;
}

bool is_catch_all(const Rule& r) {
  return r.axes.empty() && r.device_types.empty() && !r.libtorch_below && !r.libtorch_at_least &&
         !r.compute_capability_below && !r.compute_capability_at_least;
}

// Conditions compare as parsed: lists as sets (order and repeats do not matter), versions
// numerically ("2.0" == "2.0.0").
bool same_values(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  return std::set<std::string>(a.begin(), a.end()) == std::set<std::string>(b.begin(), b.end());
}

bool same_version(const std::optional<std::string>& a, const std::optional<std::string>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || compare_versions(*a, *b) == 0;
}

bool same_condition(const Rule& a, const Rule& b) {
  if (a.axes.size() != b.axes.size()) return false;
  for (const auto& [axis, values] : a.axes) {
    const auto it = b.axes.find(axis);
    if (it == b.axes.end() || !same_values(values, it->second)) return false;
  }
  return same_values(a.device_types, b.device_types) &&
         same_version(a.libtorch_below, b.libtorch_below) &&
         same_version(a.libtorch_at_least, b.libtorch_at_least) &&
         a.compute_capability_below == b.compute_capability_below &&
         a.compute_capability_at_least == b.compute_capability_at_least;
}

// A case id without its device part: fixes and axis conditions never involve the device.
std::string axes_id(const Case& c) {
  const std::string id = c.id();
  return id.substr(id.find('/') + 1);
}

// A case (as matrix expansion stores them) that the rule's axis conditions accept both before and
// after its fix, if any. Exhaustive over the axes the condition or the fix names (plus weights and
// double_quant, which a fix of weights couples): the others keep their defaults, as neither side
// reads them. Only real cases show effects like double_quant dropping when a fix sets weights to
// none/int8.
std::optional<std::pair<Case, Case>> case_the_fix_leaves_matched(const Rule& r) {
  std::vector<const AxisInfo*> free_axes;
  for (const AxisInfo& a : case_axes()) {
    if (a.name == "weights" || a.name == "double_quant" || r.axes.count(a.name) ||
        r.fix->set.count(a.name)) {
      free_axes.push_back(&a);
    }
  }
  std::vector<std::size_t> index(free_axes.size(), 0);
  while (true) {
    Case c;
    for (std::size_t i = 0; i < free_axes.size(); ++i) {
      set_axis(c, free_axes[i]->name, free_axes[i]->values[index[i]]);
    }
    const bool real = !(c.double_quant && !is_4bit(c.weights));
    if (real && axes_hold(r.axes, c)) {
      const Case fixed = apply_fix(c, *r.fix);
      if (axes_hold(r.axes, fixed)) return std::make_pair(c, fixed);
    }
    std::size_t i = 0;
    for (; i < free_axes.size(); ++i) {
      if (++index[i] < free_axes[i]->values.size()) break;
      index[i] = 0;
    }
    if (i == free_axes.size()) return std::nullopt;
  }
}

class Parser {
 public:
  explicit Parser(std::string source) : source_(std::move(source)) {}

  Rules parse(const std::string& text) {
    const YAML::Node root = yaml_support::load_root_mapping(
        text, "rules", "rules",
        [this](const YAML::Mark& mark, const std::string& what) { fail(mark, what); });
    YAML::Node list;
    std::optional<YAML::Mark> list_mark;
    for_each_key(root, [&](const YAML::Node& key, const YAML::Node& value, const std::string& k) {
      if (k != "rules") fail(key.Mark(), "unknown key '" + k + "' (expected rules)");
      list = value;
      list_mark = value_mark(key, value);
    });
    if (!list_mark) fail(root.Mark(), "missing key 'rules'");
    if (!list.IsSequence()) fail(*list_mark, "'rules' must be a list of rules");
    if (list.size() == 0) {
      fail(*list_mark, "'rules' is an empty list (expected at least a catch-all `when: {}`)");
    }

    Rules out;
    out.source = source_;
    for (const auto& node : list) {
      Rule r = parse_rule(node, out.rules.size() + 1);
      check_against_earlier(r, out.rules);
      out.rules.push_back(std::move(r));
    }
    const Rule& last = out.rules.back();
    if (!is_catch_all(last)) {
      label_ = "rule '" + last.id + "'";
      fail_at(last.line, "the last rule must have `when: {}` so every case gets a prediction");
    }
    return out;
  }

 private:
  static int line_of(const YAML::Mark& mark) { return mark.is_null() ? 1 : mark.line + 1; }

  // "file:line: rule 'id': what" (yaml-cpp counts lines from 0, editors from 1); without the
  // rule part outside of a rule.
  [[noreturn]] void fail_at(int line, const std::string& what) const {
    std::string message = source_ + ":" + std::to_string(line) + ": ";
    if (!label_.empty()) message += label_ + ": ";
    throw RulesError(message + what);
  }

  [[noreturn]] void fail(const YAML::Mark& mark, const std::string& what) const {
    fail_at(line_of(mark), what);
  }

  template <typename Fn>
  void for_each_key(const YAML::Node& map, Fn&& fn) const {
    yaml_support::for_each_key(
        map, [this](const YAML::Mark& mark, const std::string& what) { fail(mark, what); }, fn);
  }

  Rule parse_rule(const YAML::Node& node, std::size_t index) {
    label_ = "rule #" + std::to_string(index);
    if (!node.IsMap()) fail(node.Mark(), std::string("expected a mapping with keys ") + kRuleKeys);
    Rule r;
    r.line = line_of(node.Mark());
    // The id first, wherever it stands, so that every later error can name the rule.
    r.id = parse_id(node, r.line);
    std::set<std::string> given;
    std::optional<YAML::Mark> fix_mark;
    for_each_key(node, [&](const YAML::Node& key, const YAML::Node& value, const std::string& k) {
      given.insert(k);
      if (k == "id") {
        // parsed above
      } else if (k == "when") {
        parse_when(key, value, r);
      } else if (k == "predict") {
        r.predict = parse_outcome(key, value);
      } else if (k == "why") {
        r.why = text(key, value, "why");
      } else if (k == "detect") {
        r.detect = text(key, value, "detect");
      } else if (k == "source") {
        r.source = text(key, value, "source");
      } else if (k == "fix") {
        r.fix = parse_fix(key, value);
        fix_mark = key.Mark();
      } else {
        fail(key.Mark(), "unknown key '" + k + "' (expected " + kRuleKeys + ")");
      }
    });
    for (const char* k : {"when", "predict", "why", "detect", "source"}) {
      if (!given.count(k)) fail(node.Mark(), std::string("missing key '") + k + "'");
    }
    if (r.fix) {
      if (const auto example = case_the_fix_leaves_matched(r)) {
        const std::string before = axes_id(example->first), after = axes_id(example->second);
        fail(*fix_mark, "its fix leaves the rule's condition holding (e.g. for " + before +
                            (before == after ? ", which it leaves unchanged)"
                                             : ", which becomes " + after + ")"));
      }
    }
    return r;
  }

  std::string parse_id(const YAML::Node& rule, int rule_line) {
    for (const auto& entry : rule) {
      const YAML::Node key = entry.first;
      const YAML::Node value = entry.second;
      if (!key.IsScalar() || key.Scalar() != "id") continue;
      const YAML::Mark mark = value_mark(key, value);
      const std::string id = value.IsScalar() ? value.Scalar() : "";
      const bool valid = !id.empty() && std::all_of(id.begin(), id.end(), [](char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-';
      });
      if (!valid) fail(mark, "bad id '" + id + "' (expected a name of [a-z0-9-]+)");
      const auto [it, inserted] = ids_.emplace(id, rule_line);
      label_ = "rule '" + id + "'";
      if (!inserted) {
        fail(mark, "duplicate id (already used by the rule at line " +
                       std::to_string(it->second) + ")");
      }
      return id;
    }
    fail(rule.Mark(), "missing key 'id'");
  }

  void parse_when(const YAML::Node& key, const YAML::Node& value, Rule& r) const {
    if (!value.IsMap()) {
      fail(value_mark(key, value),
           "'when' must be a mapping of conditions ({} matches every case)");
    }
    for_each_key(value, [&](const YAML::Node& k_node, const YAML::Node& v, const std::string& k) {
      if (is_axis(k)) {
        r.axes[k] = parse_values(k_node, v, k);
      } else if (k == "device_type") {
        r.device_types = parse_values(k_node, v, k);
      } else if (k == "libtorch_below") {
        r.libtorch_below = parse_version(k_node, v, k);
      } else if (k == "libtorch_at_least") {
        r.libtorch_at_least = parse_version(k_node, v, k);
      } else if (k == "compute_capability_below") {
        r.compute_capability_below = parse_capability(k_node, v, k);
      } else if (k == "compute_capability_at_least") {
        r.compute_capability_at_least = parse_capability(k_node, v, k);
      } else {
        fail(k_node.Mark(), "unknown condition '" + k + "' (expected " + condition_keys() + ")");
      }
    });
  }

  std::string value_of(const YAML::Node& node, const YAML::Mark& mark,
                       const std::string& key) const {
    if (!node.IsScalar()) fail(mark, "'" + key + "' must be one value or a list of values");
    try {
      check_value(key, node.Scalar());
    } catch (const std::invalid_argument& e) {
      fail(mark, "'" + key + "': " + e.what());
    }
    return node.Scalar();
  }

  // One value or a non-empty list of values.
  std::vector<std::string> parse_values(const YAML::Node& key, const YAML::Node& value,
                                        const std::string& k) const {
    const YAML::Mark mark = value_mark(key, value);
    if (!value.IsSequence()) return {value_of(value, mark, k)};
    if (value.size() == 0) fail(mark, "'" + k + "' has an empty list (it would match no case)");
    std::vector<std::string> out;
    for (const auto& item : value) out.push_back(value_of(item, item.Mark(), k));
    return out;
  }

  std::string parse_version(const YAML::Node& key, const YAML::Node& value,
                            const std::string& k) const {
    const YAML::Mark mark = value_mark(key, value);
    if (!value.IsScalar()) fail(mark, "'" + k + "' must be a version, e.g. \"2.0\"");
    try {
      compare_versions(value.Scalar(), "0");
    } catch (const std::invalid_argument& e) {
      fail(mark, "'" + k + "': " + e.what());
    }
    return value.Scalar();
  }

  double parse_capability(const YAML::Node& key, const YAML::Node& value,
                          const std::string& k) const {
    const YAML::Mark mark = value_mark(key, value);
    const std::string text = value.IsScalar() ? value.Scalar() : "";
    double out = 0.0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
        !std::isfinite(out) || out <= 0) {
      fail(mark, "'" + k + "' must be a number > 0, e.g. 8.0, got '" + text + "'");
    }
    return out;
  }

  Outcome parse_outcome(const YAML::Node& key, const YAML::Node& value) const {
    const YAML::Mark mark = value_mark(key, value);
    try {
      return outcome_from_string(value.IsScalar() ? value.Scalar() : "");
    } catch (const std::invalid_argument& e) {
      fail(mark, std::string("'predict': ") + e.what());
    }
  }

  std::string text(const YAML::Node& key, const YAML::Node& value, const std::string& k) const {
    const std::string s = value.IsScalar() ? value.Scalar() : "";
    if (s.find_first_not_of(" \t\r\n") == std::string::npos) {
      fail(value_mark(key, value), "'" + k + "' must be a non-empty text");
    }
    return s;
  }

  Fix parse_fix(const YAML::Node& key, const YAML::Node& value) const {
    if (!value.IsMap()) fail(value_mark(key, value), "'fix' must be a mapping with keys set, text");
    Fix f;
    std::set<std::string> given;
    for_each_key(value, [&](const YAML::Node& k_node, const YAML::Node& v, const std::string& k) {
      given.insert(k);
      if (k == "set") {
        if (!v.IsMap() || v.size() == 0) {
          fail(value_mark(k_node, v), "'fix.set' must be a non-empty mapping of axis: value, "
                                      "e.g. {optimizer: adamw-fp32}");
        }
        for_each_key(v, [&](const YAML::Node& a_node, const YAML::Node& a,
                            const std::string& axis) {
          if (!is_axis(axis)) {
            fail(a_node.Mark(),
                 "'fix.set': unknown axis '" + axis + "' (expected " + axis_keys() + ")");
          }
          f.set[axis] = value_of(a, value_mark(a_node, a), axis);
        });
      } else if (k == "text") {
        f.text = text(k_node, v, "fix.text");
      } else {
        fail(k_node.Mark(), "unknown key 'fix." + k + "' (expected set, text)");
      }
    });
    for (const char* k : {"set", "text"}) {
      if (!given.count(k)) fail(key.Mark(), std::string("'fix' is missing key '") + k + "'");
    }
    return f;
  }

  // The contradictions with earlier rules, reported on the later rule (the one to move or drop).
  void check_against_earlier(const Rule& r, const std::vector<Rule>& earlier) {
    label_ = "rule '" + r.id + "'";
    for (const Rule& e : earlier) {
      if (is_catch_all(e)) {
        fail_at(r.line, "never applies: rule '" + e.id + "' (line " + std::to_string(e.line) +
                            ") matches every case first");
      }
    }
    for (const Rule& e : earlier) {
      if (same_condition(e, r)) {
        fail_at(r.line, "same condition as rule '" + e.id + "' (line " + std::to_string(e.line) +
                            "), which always applies first");
      }
    }
  }

  std::string source_;
  std::string label_;               // "rule 'id'" or "rule #N" while in a rule
  std::map<std::string, int> ids_;  // id -> line of its rule
};

// The dot-separated numbers at the start of `v` ("2.13.0+cpu" -> 2, 13, 0).
std::vector<unsigned long long> version_parts(const std::string& v) {
  std::vector<unsigned long long> parts;
  const char* p = v.data();
  const char* const end = p + v.size();
  while (true) {
    unsigned long long n = 0;
    const auto [next, ec] = std::from_chars(p, end, n);
    if (ec == std::errc::result_out_of_range) {
      throw std::invalid_argument("bad version '" + v + "' (a number out of range)");
    }
    if (ec != std::errc()) break;  // the rest is a suffix such as "+cpu"
    parts.push_back(n);
    p = next;
    if (p == end || *p != '.') break;
    ++p;
  }
  if (parts.empty()) {
    throw std::invalid_argument("bad version '" + v + "' (expected MAJOR.MINOR[.PATCH], e.g. 2.0)");
  }
  return parts;
}

}  // namespace

bool Rule::matches(const Case& c, const DeviceFacts& facts) const {
  if (!axes_hold(axes, c)) return false;
  if (!device_types.empty() &&
      std::find(device_types.begin(), device_types.end(), facts.device_type) ==
          device_types.end()) {
    return false;
  }
  // An unknown LibTorch version throws (compare_versions) rather than guessing a prediction.
  if (libtorch_below && compare_versions(facts.libtorch_version, *libtorch_below) >= 0) {
    return false;
  }
  if (libtorch_at_least && compare_versions(facts.libtorch_version, *libtorch_at_least) < 0) {
    return false;
  }
  // A CPU has no compute capability (0): neither bound holds there.
  const bool has_cc = facts.compute_capability > 0;
  if (compute_capability_below &&
      !(has_cc && facts.compute_capability < *compute_capability_below)) {
    return false;
  }
  if (compute_capability_at_least &&
      !(has_cc && facts.compute_capability >= *compute_capability_at_least)) {
    return false;
  }
  return true;
}

const Rule& Rules::match(const Case& c, const DeviceFacts& facts) const {
  for (const Rule& r : rules) {
    if (r.matches(c, facts)) return r;
  }
  throw std::logic_error("no rule of " + source + " matches case " + c.id() +
                         " (a valid rules file ends with a catch-all)");
}

Rules parse_rules(const std::string& yaml_text, const std::string& source_name) {
  return Parser(source_name).parse(yaml_text);
}

Rules load_rules(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw RulesError(path + ": cannot read: it is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw RulesError(path + ": cannot read: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw RulesError(path + ": cannot read: read error");
  return parse_rules(text.str(), path);
}

Case apply_fix(const Case& c, const Fix& fix) {
  Case out = c;
  for (const auto& [axis, value] : fix.set) {
    check_axis_value(axis, value);  // the device is no fix
    set_axis(out, axis, value);
  }
  // Double quantization exists for 4-bit weights only; matrix expansion stores false elsewhere.
  if (!is_4bit(out.weights)) out.double_quant = false;
  return out;
}

int compare_versions(const std::string& a, const std::string& b) {
  const auto pa = version_parts(a);
  const auto pb = version_parts(b);
  for (std::size_t i = 0; i < std::max(pa.size(), pb.size()); ++i) {
    const unsigned long long x = i < pa.size() ? pa[i] : 0;
    const unsigned long long y = i < pb.size() ? pb[i] : 0;
    if (x != y) return x < y ? -1 : 1;
  }
  return 0;
}

}  // namespace qlc::harness
