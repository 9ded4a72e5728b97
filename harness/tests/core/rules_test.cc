// Rules files: parsing, first-match prediction, device facts, fixes, versions, and every
// rejection with "file:line: rule 'id': what".
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "qlc/harness/rules.h"

namespace qlc::harness {
namespace {

// One rule entry (list item at indent 2) with the required texts. `when` follows "when: " (a flow
// mapping, or a newline and block lines at indent 6); `more` is extra block lines at indent 4.
std::string rule(const std::string& id, const std::string& when, const std::string& predict = "ok",
                 const std::string& more = "") {
  return "  - id: " + id + "\n    when: " + when + "\n    predict: " + predict +
         "\n    why: w\n    detect: d\n    source: s\n" + more;
}

const std::string kCatchAll = rule("rest", "{}");

// A file of `entries` followed by the catch-all.
std::string file(const std::string& entries) { return "rules:\n" + entries + kCatchAll; }

// The 1-based line of the first occurrence of `needle` in `text`: the line an error must name,
// found from the text itself rather than counted by hand.
int line_of(const std::string& text, const std::string& needle) {
  const auto pos = text.find(needle);
  if (pos == std::string::npos) throw std::logic_error("test bug: '" + needle + "' not in text");
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + pos, '\n'));
}

// The RulesError message for `yaml` ("" when it parses).
std::string error_of(const std::string& yaml) {
  try {
    parse_rules(yaml, "r.yaml");
  } catch (const RulesError& e) {
    return e.what();
  }
  return "";
}

// The error starts with "r.yaml:<line>: " and contains each of `parts`.
void expect_error(const std::string& yaml, int line, const std::vector<std::string>& parts) {
  const std::string message = error_of(yaml);
  const std::string prefix = "r.yaml:" + std::to_string(line) + ": ";
  EXPECT_EQ(message.compare(0, prefix.size(), prefix), 0)
      << "expected prefix '" << prefix << "' in: '" << message << "'\nfor:\n"
      << yaml;
  for (const auto& p : parts) {
    EXPECT_NE(message.find(p), std::string::npos)
        << "'" << p << "' in: '" << message << "'\nfor:\n"
        << yaml;
  }
}

Case make_case(const std::string& axes_id) { return Case::from_id("cpu/" + axes_id); }

DeviceFacts cpu(const std::string& libtorch = "2.13.0+cpu") { return {"cpu", libtorch, 0.0}; }
DeviceFacts cuda(double capability) { return {"cuda", "2.13.0+cu121", capability}; }

// --- parsing ------------------------------------------------------------------------------------

TEST(RulesParse, ValidFileGivesIdsLinesConditionsAndFix) {
  const std::string text = file(
      rule("fp16-states",
           "\n"
           "      param_dtype: fp16\n"
           "      optimizer: [adamw-param, adamw8bit]\n"
           "      device_type: cpu\n"
           "      libtorch_below: \"2.0\"\n",
           "nan_loss",
           "    fix:\n"
           "      set: {optimizer: adamw-fp32}\n"
           "      text: Keep the optimizer states in fp32.\n") +
      rule("old-gpu-bf16",
           "{compute_dtype: bf16, compute_capability_below: 8.0, libtorch_at_least: 1.13}",
           "unsupported_dtype") +
      rule("new-gpu", "{device_type: [cuda], compute_capability_at_least: 9}"));
  const Rules rules = parse_rules(text, "mine.yaml");
  EXPECT_EQ(rules.source, "mine.yaml");
  ASSERT_EQ(rules.rules.size(), 4u);

  const Rule& a = rules.rules[0];
  EXPECT_EQ(a.id, "fp16-states");
  EXPECT_EQ(a.line, line_of(text, "id: fp16-states"));
  EXPECT_EQ(a.axes.size(), 2u);
  EXPECT_EQ(a.axes.at("param_dtype"), std::vector<std::string>{"fp16"});
  EXPECT_EQ(a.axes.at("optimizer"), (std::vector<std::string>{"adamw-param", "adamw8bit"}));
  EXPECT_EQ(a.device_types, std::vector<std::string>{"cpu"});
  EXPECT_EQ(a.libtorch_below, "2.0");
  EXPECT_FALSE(a.libtorch_at_least);
  EXPECT_FALSE(a.compute_capability_below);
  EXPECT_EQ(a.predict, Outcome::kNanLoss);
  EXPECT_EQ(a.why, "w");
  EXPECT_EQ(a.detect, "d");
  EXPECT_EQ(a.source, "s");
  ASSERT_TRUE(a.fix);
  EXPECT_EQ(a.fix->set, (std::map<std::string, std::string>{{"optimizer", "adamw-fp32"}}));
  EXPECT_EQ(a.fix->text, "Keep the optimizer states in fp32.");

  const Rule& b = rules.rules[1];
  EXPECT_EQ(b.id, "old-gpu-bf16");
  EXPECT_EQ(b.line, line_of(text, "id: old-gpu-bf16"));
  EXPECT_EQ(b.axes.at("compute_dtype"), std::vector<std::string>{"bf16"});
  EXPECT_EQ(b.compute_capability_below, 8.0);
  EXPECT_EQ(b.libtorch_at_least, "1.13");
  EXPECT_EQ(b.predict, Outcome::kUnsupportedDtype);
  EXPECT_FALSE(b.fix);

  EXPECT_EQ(rules.rules[2].device_types, std::vector<std::string>{"cuda"});
  EXPECT_EQ(rules.rules[2].compute_capability_at_least, 9.0);

  const Rule& last = rules.rules[3];
  EXPECT_EQ(last.id, "rest");
  EXPECT_TRUE(last.axes.empty());
  EXPECT_TRUE(last.device_types.empty());
  EXPECT_EQ(last.predict, Outcome::kOk);
}

// The rules parser reads YAML as the matrix parser does: a ',' where a top-level node starts is
// an error at its position (yaml-cpp 0.7 would never return), and ',' in block scalars is text.
TEST(RulesParse, CommaWhereANodeStartsIsAnErrorNotAHang) {
  const std::string e = error_of("# rules\n, a\n");
  EXPECT_EQ(e.rfind("r.yaml:2", 0), 0u) << e;
  EXPECT_NE(e.find("',' where a value starts"), std::string::npos) << e;
  const std::string block = error_of("rules:\n  - id: x\n    when: {}\n    predict: ok\n    why: >-\n"
                                     "      , a\n      , b\n");
  EXPECT_EQ(block.find("',' where"), std::string::npos) << block;
}

TEST(RulesParse, IdMayFollowOtherKeys) {
  const Rules rules = parse_rules(
      "rules:\n  - when: {}\n    predict: ok\n    why: w\n    detect: d\n    source: s\n"
      "    id: late-id\n",
      "r.yaml");
  ASSERT_EQ(rules.rules.size(), 1u);
  EXPECT_EQ(rules.rules[0].id, "late-id");
  EXPECT_EQ(rules.rules[0].line, 2);  // the entry starts at "- when", not at its id
}

TEST(RulesParse, ShippedRulesFileParsesWithCatchAllLast) {
  // cases/rules.yaml is written separately; this test needs it to exist.
  const Rules rules = load_rules(std::string(QLC_SOURCE_DIR) + "/cases/rules.yaml");
  ASSERT_GE(rules.rules.size(), 5u);
  const Rule& last = rules.rules.back();
  EXPECT_TRUE(last.axes.empty() && last.device_types.empty() && !last.libtorch_below &&
              !last.libtorch_at_least && !last.compute_capability_below &&
              !last.compute_capability_at_least)
      << last.id;
}

// --- matching -----------------------------------------------------------------------------------

TEST(RulesMatch, FirstMatchingRuleWins) {
  const Rules rules = parse_rules(file(rule("fp16-only", "{param_dtype: fp16}", "nan_loss") +
                                       rule("half", "{param_dtype: [bf16, fp16]}", "no_learning")),
                                  "r.yaml");
  EXPECT_EQ(rules.match(make_case("nf4/param=fp16/compute=fp32/optim=adamw-fp32"), cpu()).id,
            "fp16-only");
  EXPECT_EQ(rules.match(make_case("nf4/param=bf16/compute=fp32/optim=adamw-fp32"), cpu()).id,
            "half");
  EXPECT_EQ(rules.match(make_case("nf4/param=fp32/compute=fp32/optim=adamw-fp32"), cpu()).id,
            "rest");
}

TEST(RulesMatch, EveryAxisConditionMustHold) {
  const Rules rules = parse_rules(
      file(rule("both", "{weights: [nf4, fp4], optimizer: adamw8bit}")), "r.yaml");
  EXPECT_EQ(rules.match(make_case("fp4/param=fp32/compute=fp32/optim=adamw8bit"), cpu()).id,
            "both");
  EXPECT_EQ(rules.match(make_case("int8/param=fp32/compute=fp32/optim=adamw8bit"), cpu()).id,
            "rest");
  EXPECT_EQ(rules.match(make_case("nf4/param=fp32/compute=fp32/optim=adamw-fp32"), cpu()).id,
            "rest");
}

TEST(RulesMatch, DoubleQuantComparesAsTrueFalse) {
  const Rules rules = parse_rules(file(rule("dq", "{double_quant: true}") +
                                       rule("no-dq", "{double_quant: [false]}")),
                                  "r.yaml");
  EXPECT_EQ(rules.match(make_case("nf4-dq/param=fp32/compute=fp32/optim=adamw-fp32"), cpu()).id,
            "dq");
  EXPECT_EQ(rules.match(make_case("nf4/param=fp32/compute=fp32/optim=adamw-fp32"), cpu()).id,
            "no-dq");
  // int8 has no double quantization: a stray `true` is ignored as by Case::id() and ==.
  Case int8 = make_case("int8/param=fp32/compute=fp32/optim=adamw-fp32");
  int8.double_quant = true;
  EXPECT_EQ(rules.match(int8, cpu()).id, "no-dq");
}

TEST(RulesMatch, DeviceType) {
  const Rules rules = parse_rules(file(rule("on-cuda", "{device_type: cuda}")), "r.yaml");
  const Case c = make_case("nf4/param=fp32/compute=fp32/optim=adamw-fp32");
  EXPECT_EQ(rules.match(c, cuda(8.0)).id, "on-cuda");
  EXPECT_EQ(rules.match(c, cpu()).id, "rest");
}

TEST(RulesMatch, LibtorchVersionBounds) {
  const Rules rules = parse_rules(file(rule("old", "{libtorch_below: \"2.0\"}") +
                                       rule("new", "{libtorch_at_least: \"2.13\"}")),
                                  "r.yaml");
  const Case c = make_case("nf4/param=fp32/compute=fp32/optim=adamw-fp32");
  EXPECT_EQ(rules.match(c, cpu("1.13.0")).id, "old");
  EXPECT_EQ(rules.match(c, cpu("2.13.0+cpu")).id, "new");  // the suffix does not count
  EXPECT_EQ(rules.match(c, cpu("2.0.0")).id, "rest");      // below is strict
  EXPECT_EQ(rules.match(c, cpu("2.12.1")).id, "rest");
}

TEST(RulesMatch, ComputeCapabilityNeverHoldsOnCpu) {
  const Rules rules = parse_rules(file(rule("pre-ampere", "{compute_capability_below: 8.0}") +
                                       rule("ampere", "{compute_capability_at_least: 8.0}")),
                                  "r.yaml");
  const Case c = make_case("nf4/param=fp32/compute=bf16/optim=adamw-fp32");
  EXPECT_EQ(rules.match(c, cuda(7.5)).id, "pre-ampere");
  EXPECT_EQ(rules.match(c, cuda(8.0)).id, "ampere");
  EXPECT_EQ(rules.match(c, cuda(9.0)).id, "ampere");
  // A CPU has capability 0: below 8.0 numerically, but it has no capability at all.
  EXPECT_EQ(rules.match(c, cpu()).id, "rest");
}

TEST(RulesMatch, NoMatchingRuleIsALogicError) {
  // Only a hand-built Rules can lack a catch-all.
  Rules rules;
  rules.source = "hand";
  Rule r;
  r.id = "cuda-only";
  r.device_types = {"cuda"};
  rules.rules.push_back(r);
  EXPECT_THROW(rules.match(make_case("nf4/param=fp32/compute=fp32/optim=adamw-fp32"), cpu()),
               std::logic_error);
}

// --- fixes and versions -------------------------------------------------------------------------

TEST(ApplyFix, SetsTheGivenAxesAndKeepsTheRest) {
  const Case c = Case::from_id("cuda:1/nf4/param=fp16/compute=fp16/optim=adamw-param");
  const Case fixed = apply_fix(c, Fix{{{"compute_dtype", "bf16"}, {"double_quant", "true"}}, "t"});
  EXPECT_EQ(fixed.id(), Case::from_id("cuda:1/nf4-dq/param=fp16/compute=bf16/optim=adamw-param").id());
  EXPECT_TRUE(fixed.double_quant);
  // The later axes are fixes too (upgrade a library, drop a hand cast, turn autocast off).
  const Case upgraded = apply_fix(
      c, Fix{{{"stack", "current"}, {"adapter_dtype", "peft"}, {"amp", "bf16"}}, "t"});
  EXPECT_EQ(upgraded.adapter_dtype, AdapterDtype::kPeft);
  EXPECT_EQ(upgraded.amp, Amp::kBf16);
  EXPECT_EQ(upgraded.param_dtype, Dtype::kFp16);
}

TEST(ApplyFix, DoubleQuantDropsWithNon4BitWeights) {
  const Case c = make_case("nf4-dq/param=fp32/compute=fp32/optim=adamw-fp32");
  const Case fixed = apply_fix(c, Fix{{{"weights", "int8"}}, "t"});
  EXPECT_EQ(fixed.weights, WeightFormat::kInt8);
  EXPECT_FALSE(fixed.double_quant);  // as matrix expansion stores int8 cases
  EXPECT_EQ(apply_fix(c, Fix{{{"weights", "fp4"}}, "t"}).double_quant, true);
}

TEST(ApplyFix, RejectsUnknownAxesAndValues) {
  const Case c;
  EXPECT_THROW(apply_fix(c, Fix{{{"device", "cpu"}}, "t"}), std::invalid_argument);
  EXPECT_THROW(apply_fix(c, Fix{{{"param_dtype", "fp8"}}, "t"}), std::invalid_argument);
  EXPECT_THROW(apply_fix(c, Fix{{{"double_quant", "yes"}}, "t"}), std::invalid_argument);
}

TEST(CompareVersions, ComparesNumbersPartByPart) {
  EXPECT_EQ(compare_versions("1.13.0", "2.0"), -1);
  EXPECT_EQ(compare_versions("2.0", "1.13.1"), 1);
  EXPECT_EQ(compare_versions("2.10", "2.9"), 1);  // numbers, not text
  EXPECT_EQ(compare_versions("2.0", "2.0.0"), 0);  // missing parts are 0
  EXPECT_EQ(compare_versions("2", "2.0.1"), -1);
  EXPECT_EQ(compare_versions("2.13.0+cpu", "2.13.0"), 0);  // a local suffix is ignored
  EXPECT_EQ(compare_versions("2.13.0+cpu", "2.13.1"), -1);
  EXPECT_EQ(compare_versions("1.13.1a0", "1.13.1"), 0);
}

TEST(CompareVersions, RejectsVersionsWithoutANumber) {
  EXPECT_THROW(compare_versions("", "1.0"), std::invalid_argument);
  EXPECT_THROW(compare_versions("1.0", "abc"), std::invalid_argument);
  EXPECT_THROW(compare_versions("v2.0", "2.0"), std::invalid_argument);
  EXPECT_THROW(compare_versions("+cpu", "2.0"), std::invalid_argument);
  EXPECT_THROW(compare_versions("99999999999999999999999", "2.0"), std::invalid_argument);
}

// --- rejections: the file ------------------------------------------------------------------------

TEST(RulesReject, YamlSyntaxErrorNamesItsLine) {
  // Two comment lines first, so that the error's line (3) cannot be right by accident.
  expect_error("# a\n# b\nrules: [a, b}\n", 3, {"YAML syntax error"});
}

TEST(RulesReject, RootMustBeAMappingWithANonEmptyRulesList) {
  expect_error("", 1, {"empty rules file"});
  expect_error("# comment only\n", 1, {"empty rules file"});
  expect_error("- id: a\n", 1, {"expected a mapping with key 'rules'"});
  expect_error("{}\n", 1, {"missing key 'rules'"});
  const std::string extra = file("") + "extra: 1\n";
  expect_error(extra, line_of(extra, "extra:"), {"unknown key 'extra'", "expected rules"});
  expect_error("# x\nrules: {a: 1}\n", 2, {"'rules' must be a list"});
  expect_error("# x\nrules:\n", 2, {"'rules' must be a list"});
  expect_error("# x\nrules: []\n", 2, {"'rules' is an empty list"});
}

TEST(RulesReject, ErrorsCarryTheFileName) {
  try {
    parse_rules("rules: []\n", "some/dir/my-rules.yaml");
    FAIL() << "no error";
  } catch (const RulesError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("some/dir/my-rules.yaml:1: ", 0), 0u) << e.what();
  }
}

// --- rejections: rule shape and ids -------------------------------------------------------------

TEST(RulesReject, RuleMustBeAMapping) {
  const std::string text = "rules:\n" + kCatchAll + "  - just-text\n";
  expect_error(text, line_of(text, "just-text"), {"rule #2: ", "expected a mapping"});
}

TEST(RulesReject, UnknownRuleKeyNamesTheRuleEvenBeforeItsId) {
  const std::string text =
      file("  - colour: red\n    id: x\n    when: {weights: nf4}\n    predict: ok\n"
           "    why: w\n    detect: d\n    source: s\n");
  expect_error(text, line_of(text, "colour"),
               {"rule 'x': ", "unknown key 'colour'", "expected id, when, predict"});
}

TEST(RulesReject, MissingId) {
  const std::string text =
      file(rule("first", "{weights: nf4}") +
           "  - when: {weights: fp4}\n    predict: ok\n    why: w\n    detect: d\n    source: s\n");
  expect_error(text, line_of(text, "when: {weights: fp4}"), {"rule #2: ", "missing key 'id'"});
}

TEST(RulesReject, BadIds) {
  for (const std::string bad : {"Bad_Id", "has space", "\"\"", "[a]", "ü"}) {
    const std::string text = file(rule("ok-one", "{weights: nf4}") + rule(bad, "{weights: fp4}"));
    expect_error(text, line_of(text, "id: " + bad), {"rule #2: ", "bad id", "[a-z0-9-]+"});
  }
  const std::string null_id = file("  - id:\n    when: {}\n");
  expect_error(null_id, 2, {"rule #1: ", "bad id"});
}

TEST(RulesReject, DuplicateIdNamesTheFirstLine) {
  const std::string text =
      file(rule("same", "{weights: nf4}") + rule("other", "{weights: int8}") +
           rule("same", "{weights: fp4}"));
  const int first = line_of(text, "id: same");
  const int second = line_of(text, "id: same\n    when: {weights: fp4}");
  expect_error(text, second,
               {"rule 'same': ", "duplicate id", "line " + std::to_string(first) + ")"});
}

TEST(RulesReject, DuplicateKeyInARule) {
  const std::string text = file(rule("dup", "{}", "ok", "    why: again\n"));
  expect_error(text, line_of(text, "why: again"), {"rule 'dup': ", "duplicate key 'why'"});
}

TEST(RulesReject, EachRequiredKeyIsRequired) {
  for (const std::string key : {"when", "predict", "why", "detect", "source"}) {
    std::string entry = rule("needs-" + key, "{weights: nf4}");
    const auto at = entry.find("    " + key + ":");
    entry.erase(at, entry.find('\n', at) + 1 - at);
    const std::string text = file(entry);
    expect_error(text, line_of(text, "id: needs-"),
                 {"rule 'needs-" + key + "': ", "missing key '" + key + "'"});
  }
}

// --- rejections: conditions ---------------------------------------------------------------------

TEST(RulesReject, WhenMustBeAMapping) {
  for (const std::string when : {"fp16", "[weights]", ""}) {
    const std::string text = file(rule("w", when));
    expect_error(text, line_of(text, "when:"), {"rule 'w': ", "'when' must be a mapping"});
  }
}

TEST(RulesReject, UnknownConditionKey) {
  const std::string text = file(rule("u", "\n      weights: nf4\n      device: cpu\n"));
  expect_error(text, line_of(text, "device: cpu"),
               {"rule 'u': ", "unknown condition 'device'", "device_type"});
}

TEST(RulesReject, BadValueForEachValueCondition) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"weights", "nf5"},         {"double_quant", "yes"},  {"double_quant", "True"},
      {"param_dtype", "fp8"},     {"compute_dtype", "fp64"}, {"optimizer", "sgd"},
      {"device_type", "cuda:0"},  {"device_type", "tpu"}};
  for (const auto& [key, value] : bad) {
    // Alone and inside a list.
    for (const std::string& form : {value, "[" + value + "]"}) {
      const std::string text =
          file(rule("v", "\n      # a comment\n      " + key + ": " + form + "\n"));
      expect_error(text, line_of(text, key + ": " + form),
                   {"rule 'v': ", "'" + key + "'", "'" + value + "'"});
    }
  }
}

TEST(RulesReject, ValueListsMustBeNonEmptyListsOfScalars) {
  const std::string empty = file(rule("e", "\n      param_dtype: []\n"));
  expect_error(empty, line_of(empty, "param_dtype"), {"rule 'e': ", "empty list"});
  const std::string nested = file(rule("n", "\n      optimizer: [[adamw8bit]]\n"));
  expect_error(nested, line_of(nested, "optimizer"), {"rule 'n': ", "one value or a list"});
  const std::string null_value = file(rule("z", "\n      weights:\n      optimizer: adamw8bit\n"));
  expect_error(null_value, line_of(null_value, "weights:"), {"rule 'z': ", "'weights'"});
}

TEST(RulesReject, BadVersions) {
  for (const std::string key : {"libtorch_below", "libtorch_at_least"}) {
    for (const std::string value : {"abc", "v2.0", "\"\"", "[2.0]"}) {
      const std::string text = file(rule("ver", "\n      " + key + ": " + value + "\n"));
      expect_error(text, line_of(text, key), {"rule 'ver': ", "'" + key + "'"});
    }
  }
}

TEST(RulesReject, BadComputeCapabilities) {
  for (const std::string key : {"compute_capability_below", "compute_capability_at_least"}) {
    for (const std::string value : {"0", "-1", "abc", "8.0x", "[8.0]", ".nan", "inf"}) {
      const std::string text = file(rule("cc", "\n      " + key + ": " + value + "\n"));
      expect_error(text, line_of(text, key), {"rule 'cc': ", "'" + key + "'", "> 0"});
    }
  }
}

// --- rejections: predict, texts, fix ------------------------------------------------------------

TEST(RulesReject, PredictMustBeAnOutcome) {
  for (const std::string value : {"explode", "OK", "[ok]", ""}) {
    const std::string text = file(rule("p", "{weights: nf4}", value));
    expect_error(text, line_of(text, "predict:"), {"rule 'p': ", "'predict'", "nan_loss"});
  }
}

TEST(RulesReject, TextsMustBeNonEmpty) {
  for (const std::string key : {"why", "detect", "source"}) {
    for (const std::string value : {"\"\"", "\"  \"", "", "[a]", "{a: b}"}) {
      std::string entry = rule("t", "{weights: nf4}");
      const auto at = entry.find("    " + key + ":");
      entry.replace(at, entry.find('\n', at) - at, "    " + key + ": " + value);
      const std::string text = file(entry);
      expect_error(text, line_of(text, "    " + key + ":"),
                   {"rule 't': ", "'" + key + "' must be a non-empty text"});
    }
  }
}

// A rule on fp16 params whose `fix` block is `fix_lines` (indent 4).
std::string with_fix(const std::string& fix_lines) {
  return file(rule("f", "{param_dtype: fp16}", "nan_loss", fix_lines));
}

TEST(RulesReject, FixMustBeSetAndText) {
  const std::string not_map = with_fix("    fix: use bf16\n");
  expect_error(not_map, line_of(not_map, "fix:"), {"rule 'f': ", "'fix' must be a mapping"});
  const std::string no_set = with_fix("    fix:\n      text: t\n");
  expect_error(no_set, line_of(no_set, "fix:"), {"rule 'f': ", "missing key 'set'"});
  const std::string no_text = with_fix("    fix:\n      set: {param_dtype: bf16}\n");
  expect_error(no_text, line_of(no_text, "fix:"), {"rule 'f': ", "missing key 'text'"});
  const std::string empty_text =
      with_fix("    fix:\n      set: {param_dtype: bf16}\n      text:\n");
  expect_error(empty_text, line_of(empty_text, "text:"), {"rule 'f': ", "non-empty text"});
  const std::string extra = with_fix("    fix:\n      set: {param_dtype: bf16}\n      text: t\n"
                                     "      when: now\n");
  expect_error(extra, line_of(extra, "when: now"), {"rule 'f': ", "unknown key 'fix.when'"});
}

TEST(RulesReject, FixSetMustBeANonEmptyMappingOfValidAxisValues) {
  for (const std::string set : {"{}", "[param_dtype]", "bf16", ""}) {
    const std::string text = with_fix("    fix:\n      set: " + set + "\n      text: t\n");
    expect_error(text, line_of(text, "set:"), {"rule 'f': ", "'fix.set' must be a non-empty"});
  }
  // The device is not a fix axis; neither are device facts.
  for (const std::string axis : {"device", "device_type", "libtorch_below"}) {
    const std::string text = with_fix("    fix:\n      set:\n        " + axis + ": x\n"
                                      "      text: t\n");
    expect_error(text, line_of(text, axis + ": x"), {"rule 'f': ", "unknown axis '" + axis + "'"});
  }
  for (const std::string value : {"fp8", "[bf16]"}) {
    const std::string text =
        with_fix("    fix:\n      set:\n        param_dtype: " + value + "\n      text: t\n");
    expect_error(text, line_of(text, "param_dtype: " + value), {"rule 'f': ", "'param_dtype'"});
  }
}

// --- rejections: contradictions -----------------------------------------------------------------

TEST(RulesReject, SameConditionAsAnEarlierRuleComparesParsedConditions) {
  // Same condition, spelled differently: scalar vs one-item list, list order, key order, and
  // versions equal as numbers.
  const std::string text = file(
      rule("first", "{param_dtype: fp16, optimizer: [adamw8bit, adamw-param], "
                    "libtorch_below: \"2.0\"}") +
      rule("middle", "{param_dtype: bf16}") +
      rule("again", "{libtorch_below: 2.0.0, optimizer: [adamw-param, adamw8bit], "
                    "param_dtype: [fp16]}"));
  expect_error(text, line_of(text, "id: again"),
               {"rule 'again': ", "same condition as rule 'first' (line " +
                                      std::to_string(line_of(text, "id: first")) + ")"});
}

TEST(RulesReject, SameConditionOnDeviceFactsOnly) {
  const std::string text = file(rule("a", "{compute_capability_below: 8}") +
                                rule("b", "{compute_capability_below: 8.0}"));
  expect_error(text, line_of(text, "id: b"), {"rule 'b': ", "same condition as rule 'a'"});
}

TEST(RulesReject, DifferentConditionsAreNotTheSame) {
  // Each differs from the first in one place only.
  const std::string text =
      file(rule("a", "{param_dtype: fp16, device_type: cpu}") +
           rule("b", "{param_dtype: fp16, device_type: cuda}") +
           rule("c", "{param_dtype: [fp16, bf16], device_type: cpu}") +
           rule("d", "{param_dtype: fp16, device_type: cpu, libtorch_below: \"2.0\"}") +
           rule("e", "{param_dtype: fp16, device_type: cpu, libtorch_at_least: \"2.0\"}") +
           rule("f", "{param_dtype: fp16, device_type: cpu, compute_capability_below: 8}") +
           rule("g", "{param_dtype: fp16, device_type: cpu, compute_capability_at_least: 8}") +
           rule("h", "{compute_dtype: fp16, device_type: cpu}"));
  EXPECT_EQ(error_of(text), "");
}

TEST(RulesReject, RuleAfterACatchAllNeverApplies) {
  const std::string text = "rules:\n" + kCatchAll + rule("late", "{weights: nf4}") +
                           rule("final", "{}");
  expect_error(text, line_of(text, "id: late"),
               {"rule 'late': ", "never applies: rule 'rest' (line " +
                                     std::to_string(line_of(text, "id: rest")) +
                                     ") matches every case first"});
}

TEST(RulesReject, LastRuleMustBeACatchAll) {
  const std::string text = "rules:\n" + rule("a", "{weights: nf4}") + rule("b", "{weights: fp4}");
  expect_error(text, line_of(text, "id: b"),
               {"rule 'b': ",
                "the last rule must have `when: {}` so every case gets a prediction"});
}

TEST(RulesReject, FixThatLeavesTheConditionHolding) {
  // Changing an axis the condition does not test, or to another accepted value.
  for (const std::string set : {"{optimizer: adamw-fp32}", "{param_dtype: bf16}"}) {
    const std::string text = file(rule("bad-fix", "{param_dtype: [fp16, bf16]}", "nan_loss",
                                       "    fix:\n      set: " + set + "\n      text: t\n"));
    expect_error(text, line_of(text, "fix:"),
                 {"rule 'bad-fix': ", "its fix leaves the rule's condition holding"});
  }
  // A condition on device facts only: no fix of the axes can change it.
  const std::string device_only = file(rule("cpu-only", "{device_type: cpu}", "nan_loss",
                                            "    fix:\n      set: {weights: none}\n"
                                            "      text: t\n"));
  expect_error(device_only, line_of(device_only, "fix:"),
               {"rule 'cpu-only': ", "its fix leaves the rule's condition holding"});
  // Double quantization cannot be turned on for weights without it.
  const std::string dq = file(rule("int8-plain", "{weights: int8, double_quant: false}", "nan_loss",
                                   "    fix:\n      set: {double_quant: true}\n      text: t\n"));
  expect_error(dq, line_of(dq, "fix:"),
               {"rule 'int8-plain': ", "its fix leaves the rule's condition holding"});
}

TEST(RulesReject, FixThatChangesTheConditionIsAccepted) {
  // Setting the tested axis to a value outside the list; and dropping double quantization by
  // moving to int8, which matrix expansion stores without it.
  const std::string text =
      file(rule("a", "{param_dtype: [fp16, bf16], optimizer: adamw-param}", "nan_loss",
                "    fix:\n      set: {optimizer: adamw-fp32}\n      text: t\n") +
           rule("b", "{double_quant: true}", "oom",
                "    fix:\n      set: {weights: int8}\n      text: t\n"));
  EXPECT_EQ(error_of(text), "");
}

// The later axes are conditions and fixes like the others, checked the same way.
TEST(RulesReject, LaterAxesInConditionsAndFixes) {
  const std::string good = file(rule("unscale-fp16", "{amp: fp16, adapter_dtype: model, param_dtype: fp16}",
                                     "unsupported_dtype",
                                     "    fix:\n      set: {adapter_dtype: peft}\n      text: t\n"));
  EXPECT_EQ(error_of(good), "");
  const Rules rules = parse_rules(good, "r.yaml");
  Case c = make_case("none/param=fp16/compute=fp16/optim=adamw-fp32");
  c.amp = Amp::kFp16;
  EXPECT_EQ(rules.match(c, cpu()).id, "unscale-fp16");
  c.amp = Amp::kBf16;
  EXPECT_EQ(rules.match(c, cpu()).id, "rest");  // kCatchAll's id
  // A fix to another value the condition accepts leaves it holding.
  const std::string stacks = file(rule("old-bnb", "{stack: [bnb-0.44, bnb-0.46]}", "unsupported_op",
                                       "    fix:\n      set: {stack: bnb-0.46}\n      text: t\n"));
  expect_error(stacks, line_of(stacks, "fix:"),
               {"rule 'old-bnb': ", "its fix leaves the rule's condition holding"});
  // Values are checked against the axis.
  const std::string bad = file(rule("bad", "{prepare_kbit: yes}", "ok"));
  expect_error(bad, line_of(bad, "prepare_kbit"), {"rule 'bad': ", "'yes'", "off, on"});
}

// --- files --------------------------------------------------------------------------------------

TEST(LoadRules, ReadsAFileAndNamesItInErrors) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("qlc_rules_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string good = (dir / "good.yaml").string();
  std::ofstream(good) << file(rule("a", "{weights: nf4}"));
  const Rules rules = load_rules(good);
  EXPECT_EQ(rules.source, good);
  EXPECT_EQ(rules.rules.size(), 2u);

  const std::string bad = (dir / "bad.yaml").string();
  std::ofstream(bad) << "rules: []\n";
  try {
    load_rules(bad);
    ADD_FAILURE() << "no error";
  } catch (const RulesError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(bad + ":1: ", 0), 0u) << e.what();
  }
  std::filesystem::remove_all(dir);
}

TEST(LoadRules, MissingFileOrDirectoryIsARulesError) {
  const std::string missing = "/nonexistent/qlc/rules.yaml";
  try {
    load_rules(missing);
    ADD_FAILURE() << "no error";
  } catch (const RulesError& e) {
    EXPECT_EQ(std::string(e.what()), missing + ": cannot read: " + std::strerror(ENOENT));
  }
  const std::string dir = std::filesystem::temp_directory_path().string();
  try {
    load_rules(dir);
    ADD_FAILURE() << "no error";
  } catch (const RulesError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(dir + ": cannot read", 0), 0u) << e.what();
  }
}

}  // namespace
}  // namespace qlc::harness
