#include "qlc/harness/matrix.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_set>

#include "yaml_support.h"

namespace qlc::harness {
namespace {

using yaml_support::value_mark;

// The matrix axes are the case axes (case_axes(), in id order), addressed by index.
using Axis = std::size_t;

std::size_t axis_count() { return case_axes().size(); }

const std::string& axis_name(Axis a) { return case_axes().at(a).name; }

std::optional<Axis> axis_from_name(const std::string& name) {
  for (Axis a = 0; a < axis_count(); ++a) {
    if (name == axis_name(a)) return a;
  }
  return std::nullopt;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) {
    if (!out.empty()) out += ", ";
    out += s;
  }
  return out;
}

// The valid spellings of an axis' values, as listed in error messages.
const std::vector<std::string>& valid_values(Axis a) { return case_axes().at(a).values; }

bool is_valid_value(Axis a, const std::string& value) {
  Case scratch;
  try {
    set_axis(scratch, axis_name(a), value);
    return true;
  } catch (const std::invalid_argument&) {
    return false;
  }
}

// One point (or one include/exclude entry): a value per axis, unset = not given. Values are the
// validated spellings, so equality of strings is equality of values.
using Combination = std::vector<std::optional<std::string>>;

struct AxisList {
  Axis axis;
  std::vector<std::string> values;
};

class Parser {
 public:
  explicit Parser(std::string source) : source_(std::move(source)) {}

  Matrix parse(const std::string& text) {
    const YAML::Node root = yaml_support::load_root_mapping(
        text, "matrix", "matrix",
        [this](const YAML::Mark& mark, const std::string& what) { fail(mark, what); });

    Matrix m;
    m.source = source_;
    std::optional<YAML::Mark> matrix_mark;
    for_each_key(root, [&](const YAML::Node& key, const YAML::Node& value, const std::string& k) {
      if (k == "matrix") {
        matrix_mark = key.Mark();
        m.cases = parse_matrix_node(key, value);
      } else if (k == "settings") {
        m.settings = parse_settings(key, value);
      } else {
        fail(key.Mark(), "unknown key '" + k + "' (expected matrix, settings)");
      }
    });
    if (!matrix_mark) fail(root.Mark(), "missing key 'matrix'");
    return m;
  }

 private:
  std::string where(const YAML::Mark& mark) const {
    // yaml-cpp counts from 0; editors and compilers from 1. A node without a position (an empty
    // document) is reported at the start of the file.
    const int line = mark.is_null() ? 1 : mark.line + 1;
    const int column = mark.is_null() ? 1 : mark.column + 1;
    return source_ + ":" + std::to_string(line) + ":" + std::to_string(column);
  }

  [[noreturn]] void fail(const YAML::Mark& mark, const std::string& message) const {
    throw MatrixError(where(mark) + ": " + message);
  }

  template <typename Fn>
  void for_each_key(const YAML::Node& map, Fn&& fn) const {
    yaml_support::for_each_key(
        map, [this](const YAML::Mark& mark, const std::string& what) { fail(mark, what); }, fn);
  }

  Axis parse_axis_key(const YAML::Node& key, const std::string& k,
                      bool allow_include_exclude) const {
    if (auto a = axis_from_name(k)) return *a;
    std::vector<std::string> expected;
    for (Axis a = 0; a < axis_count(); ++a) expected.push_back(axis_name(a));
    if (allow_include_exclude) {
      expected.push_back("include");
      expected.push_back("exclude");
    }
    fail(key.Mark(), "unknown axis '" + k + "' (expected " + join(expected) + ")");
  }

  std::string parse_value(Axis a, const YAML::Node& node, const YAML::Mark& mark) const {
    if (!node.IsScalar()) {
      fail(mark, "expected a single value for axis '" + axis_name(a) + "' (one of " +
                     join(valid_values(a)) + ")");
    }
    const std::string v = node.Scalar();
    if (!is_valid_value(a, v)) {
      fail(mark, "unknown value '" + v + "' for axis '" + axis_name(a) + "' (expected " +
                     join(valid_values(a)) + ")");
    }
    return v;
  }

  AxisList parse_axis_list(Axis a, const YAML::Node& key, const YAML::Node& value) const {
    const YAML::Mark mark = value_mark(key, value);
    const std::string name = axis_name(a);
    if (!value.IsSequence()) {
      fail(mark, "axis '" + name + "' must be a list of values, e.g. " + name + ": [" +
                     valid_values(a).front() + "] (expected " + join(valid_values(a)) + ")");
    }
    if (value.size() == 0) {
      fail(mark, "axis '" + name + "' has an empty list (expected at least one of " +
                     join(valid_values(a)) + ")");
    }
    AxisList list{a, {}};
    for (const auto& item : value) {
      std::string v = parse_value(a, item, item.Mark());
      // A repeated value is a slip (and multiplies the cross product for nothing).
      if (std::find(list.values.begin(), list.values.end(), v) != list.values.end()) {
        fail(item.Mark(), "value '" + v + "' is listed twice in axis '" + name + "'");
      }
      list.values.push_back(std::move(v));
    }
    return list;
  }

  // One include/exclude entry: a mapping of axis -> single value.
  Combination parse_entry(const YAML::Node& node, const char* section) const {
    if (!node.IsMap()) {
      fail(node.Mark(), std::string("each '") + section +
                            "' entry must be a mapping of axis: value, e.g. {weights: nf4}");
    }
    if (node.size() == 0) fail(node.Mark(), std::string("empty '") + section + "' entry");
    Combination entry(axis_count());
    for_each_key(node, [&](const YAML::Node& key, const YAML::Node& value, const std::string& k) {
      const Axis a = parse_axis_key(key, k, false);
      entry[a] = parse_value(a, value, value_mark(key, value));
    });
    return entry;
  }

  std::vector<std::pair<Combination, YAML::Mark>> parse_entries(const YAML::Node& key,
                                                                const YAML::Node& value,
                                                                const char* section) const {
    if (!value.IsSequence()) {
      fail(value_mark(key, value), std::string("'") + section +
                                       "' must be a list of mappings, e.g. - {weights: nf4}");
    }
    std::vector<std::pair<Combination, YAML::Mark>> entries;
    for (const auto& item : value) entries.emplace_back(parse_entry(item, section), item.Mark());
    return entries;
  }

  std::vector<Case> parse_matrix_node(const YAML::Node& key, const YAML::Node& value) const {
    if (!value.IsMap()) {
      fail(value_mark(key, value), "'matrix' must be a mapping of axes (and include/exclude)");
    }
    std::vector<AxisList> axes;
    std::vector<std::pair<Combination, YAML::Mark>> excludes, includes;
    for_each_key(value, [&](const YAML::Node& k_node, const YAML::Node& v_node,
                            const std::string& k) {
      if (k == "include") {
        includes = parse_entries(k_node, v_node, "include");
      } else if (k == "exclude") {
        excludes = parse_entries(k_node, v_node, "exclude");
      } else {
        axes.push_back(parse_axis_list(parse_axis_key(k_node, k, true), k_node, v_node));
      }
    });

    std::vector<bool> original(axis_count(), false);
    for (const auto& list : axes) original[list.axis] = true;

    // GitHub rejects an exclude key that is not a matrix variable; so do we (it would either
    // match nothing or everything, neither of which the author meant).
    for (const auto& [entry, mark] : excludes) {
      for (Axis a = 0; a < axis_count(); ++a) {
        if (entry[a] && !original[a]) {
          fail(mark, "exclude key '" + axis_name(a) +
                         "' is not an axis of this matrix (exclude applies to listed axes only)");
        }
      }
    }

    // Counted before anything is built: each case is a real training run of seconds, so a
    // matrix beyond kMaxCases is a slip (or belongs in several files), not a plan.
    std::size_t count = axes.empty() ? 0 : 1;
    for (const auto& list : axes) {
      count *= list.values.size();
      if (count > kMaxCases) break;
    }
    if (count + includes.size() > kMaxCases) {
      fail(key.Mark(), "the matrix has more than " + std::to_string(kMaxCases) +
                           " cases (the product of its axes' lengths); split it into several "
                           "files or fewer values");
    }
    std::vector<Combination> combos = product(axes);
    combos.erase(std::remove_if(combos.begin(), combos.end(),
                                [&](const Combination& c) {
                                  for (const auto& e : excludes) {
                                    if (matches(c, e.first, nullptr)) return true;
                                  }
                                  return false;
                                }),
                 combos.end());

    std::vector<Combination> added;
    for (const auto& [entry, mark] : includes) {
      bool extended_any = false;
      for (auto& c : combos) {
        if (!matches(c, entry, &original)) continue;
        extended_any = true;
        for (Axis a = 0; a < axis_count(); ++a) {
          if (entry[a] && !original[a]) c[a] = entry[a];
        }
      }
      if (!extended_any) added.push_back(entry);
    }
    combos.insert(combos.end(), added.begin(), added.end());

    std::vector<Case> cases;
    std::unordered_set<std::string> ids;
    for (const auto& c : combos) {
      Case k = to_case(c);
      if (ids.insert(k.id()).second) cases.push_back(k);
    }
    if (cases.empty()) fail(key.Mark(), "the matrix expands to no cases");
    return cases;
  }

  // The product, first axis varying slowest (GitHub's job order). No axes: no combinations, so
  // that include entries become cases of their own.
  static std::vector<Combination> product(const std::vector<AxisList>& axes) {
    if (axes.empty()) return {};
    std::vector<Combination> out(1, Combination(axis_count()));
    for (const auto& list : axes) {
      std::vector<Combination> next;
      next.reserve(out.size() * list.values.size());
      for (const auto& partial : out) {
        for (const auto& v : list.values) {
          Combination c = partial;
          c[list.axis] = v;
          next.push_back(c);
        }
      }
      out = std::move(next);
    }
    return out;
  }

  // Whether `combo` agrees with every key of `entry` (only its keys on original axes when
  // `only` is given: include never compares, and never overwrites, values it added itself).
  static bool matches(const Combination& combo, const Combination& entry,
                      const std::vector<bool>* only) {
    for (std::size_t i = 0; i < entry.size(); ++i) {
      if (!entry[i] || (only && !(*only)[i])) continue;
      if (combo[i] != entry[i]) return false;
    }
    return true;
  }

  static Case to_case(const Combination& c) {
    Case k;
    k.device = "auto";
    for (Axis a = 0; a < axis_count(); ++a) {
      if (c[a]) set_axis(k, axis_name(a), *c[a]);
    }
    // Double quantization quantizes 4-bit absmax; other formats have none (see matrix.h).
    if (!is_4bit(k.weights)) k.double_quant = false;
    return k;
  }

  // --- settings ---------------------------------------------------------------------------

  std::string scalar_setting(const YAML::Node& key, const YAML::Node& value,
                             const char* what) const {
    if (!value.IsScalar()) {
      fail(value_mark(key, value), "setting '" + key.Scalar() + "' must be " + what);
    }
    return value.Scalar();
  }

  template <typename T>
  T integer_setting(const YAML::Node& key, const YAML::Node& value, T min,
                    T max = std::numeric_limits<T>::max()) const {
    const std::string text = scalar_setting(key, value, "an integer");
    T out{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    if (ec != std::errc() || end != text.data() + text.size()) {
      fail(value.Mark(), "setting '" + key.Scalar() + "' must be an integer, got '" + text + "'");
    }
    if (out < min) {
      fail(value.Mark(), "setting '" + key.Scalar() + "' must be at least " + std::to_string(min) +
                             ", got " + text);
    }
    if (out > max) {
      fail(value.Mark(), "setting '" + key.Scalar() + "' must be at most " + std::to_string(max) +
                             ", got " + text);
    }
    return out;
  }

  // A finite number >= min (> min when `min_open`) and < max, else an error quoting `range`.
  float number_setting(const YAML::Node& key, const YAML::Node& value, double min, bool min_open,
                       double max, const char* range) const {
    const std::string text = scalar_setting(key, value, "a number");
    double out = 0.0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(out)) {
      fail(value.Mark(), "setting '" + key.Scalar() + "' must be a number, got '" + text + "'");
    }
    if (out < min || (min_open && out == min) || out >= max) {
      fail(value.Mark(), "setting '" + key.Scalar() + "' must be in " + range + ", got " + text);
    }
    return static_cast<float>(out);
  }

  RunSettings parse_settings(const YAML::Node& key, const YAML::Node& value) const {
    if (!value.IsMap()) fail(value_mark(key, value), "'settings' must be a mapping");
    RunSettings s;
    constexpr double kInf = std::numeric_limits<double>::infinity();
    for_each_key(value, [&](const YAML::Node& k_node, const YAML::Node& v, const std::string& k) {
      if (k == "model") {
        fail(k_node.Mark(), "'model' is an axis now: list it under matrix, e.g. model: [tiny]");
      } else if (k == "steps") {
        s.steps = integer_setting<int>(k_node, v, 1, kMaxSteps);
      } else if (k == "warmup_steps") {
        s.warmup_steps = integer_setting<int>(k_node, v, 0);
      } else if (k == "lora_rank") {
        s.lora_rank = integer_setting<int>(k_node, v, 1);
      } else if (k == "lora_alpha") {
        s.lora_alpha = number_setting(k_node, v, 0.0, true, kInf, "(0, inf)");
      } else if (k == "lora_dropout") {
        s.lora_dropout = number_setting(k_node, v, 0.0, false, 1.0, "[0, 1)");
      } else if (k == "learning_rate") {
        s.learning_rate = number_setting(k_node, v, 0.0, true, kInf, "(0, inf)");
      } else if (k == "seed") {
        s.seed = integer_setting<uint64_t>(k_node, v, 0);
      } else {
        fail(k_node.Mark(), "unknown setting '" + k +
                                "' (expected steps, warmup_steps, lora_rank, lora_alpha, "
                                "lora_dropout, learning_rate, seed)");
      }
    });
    return s;
  }

  std::string source_;
};

}  // namespace

Matrix parse_matrix(const std::string& yaml_text, const std::string& source_name) {
  return Parser(source_name).parse(yaml_text);
}

Matrix load_matrix(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw MatrixError(path + ": cannot read matrix file: it is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw MatrixError(path + ": cannot read matrix file: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw MatrixError(path + ": cannot read matrix file: read error");
  return parse_matrix(text.str(), path);
}

void resolve_device(Matrix& matrix, const std::string& resolved) {
  if (resolved == "auto" || !is_valid_device(resolved)) {
    throw std::invalid_argument("cannot resolve device 'auto' to '" + resolved +
                                "' (expected cpu or cuda:N)");
  }
  std::vector<Case> out;
  std::unordered_set<std::string> ids;
  for (Case c : matrix.cases) {
    if (c.device == "auto") c.device = resolved;
    if (ids.insert(c.id()).second) out.push_back(c);
  }
  matrix.cases = std::move(out);
}

std::vector<Case> filter_cases(const std::vector<Case>& cases, const std::string& filter) {
  std::vector<std::string> needles;
  std::string::size_type start = 0;
  while (start <= filter.size()) {
    auto comma = filter.find(',', start);
    if (comma == std::string::npos) comma = filter.size();
    std::string item = filter.substr(start, comma - start);
    const auto first = item.find_first_not_of(" \t");
    const auto last = item.find_last_not_of(" \t");
    if (first != std::string::npos) needles.push_back(item.substr(first, last - first + 1));
    start = comma + 1;
  }
  if (needles.empty()) {
    if (filter.empty()) return cases;
    // "," or " , ": the user meant to select something, and would otherwise run everything.
    throw std::invalid_argument("--filter '" + filter +
                                "' has only empty parts (expected comma-separated parts of ids)");
  }
  std::vector<Case> out;
  for (const auto& c : cases) {
    const std::string id = c.id();
    for (const auto& n : needles) {
      if (id.find(n) != std::string::npos) {
        out.push_back(c);
        break;
      }
    }
  }
  return out;
}

}  // namespace qlc::harness
