// Rules: the human knowledge of what each combination does on a device, and why (cases/rules.yaml).
//
//   rules:
//     - id: fp16-adam-states-underflow           # unique, [a-z0-9-]+
//       when:                                     # every key must hold; {} matches every case
//         param_dtype: fp16                       # a case axis: one value or a list of values
//         optimizer: [adamw-param]
//         device_type: cpu                        # device facts (below)
//         libtorch_below: "2.0"                   # LibTorch version < 2.0
//       predict: nan_loss                         # an Outcome spelling
//       why: ...                                  # the cause (required)
//       detect: ...                               # how to see it before training (required)
//       source: ...                               # where the fact comes from (required)
//       fix:                                      # optional: a config change, machine-readable
//         set: {optimizer: adamw-fp32}            #   axes to change (valid values only)
//         text: ...                               #   the same as a sentence (required)
//
// Condition keys: the case axes but the device (case_axes(): `weights`, `double_quant`,
// `param_dtype`, `compute_dtype`, `optimizer`, `amp`, `adapter_dtype`, `prepare_kbit`,
// `grad_checkpointing`, `stack`, `model`; values as in matrix files), and the device facts `device_type` (cpu, cuda),
// `libtorch_below` / `libtorch_at_least` ("MAJOR.MINOR[.PATCH]", compared numerically),
// `compute_capability_below` / `compute_capability_at_least` (e.g. 8.0; a CPU has none, so these
// never hold on a CPU). The first rule whose condition holds makes the prediction.
//
// Rejected with RulesError "file:line: rule 'id': what", each: YAML syntax errors, a root other
// than a mapping with `rules` (a non-empty list), unknown or missing keys, bad values, duplicate
// ids; contradictions: two rules with the same condition, a rule after a catch-all (`when: {}`:
// it could never apply), no catch-all at the end (some case would get no prediction), and a fix
// that leaves the rule's own condition holding (it cannot fix what the rule predicts).
#pragma once

#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "qlc/harness/case.h"
#include "qlc/harness/outcome.h"

namespace qlc::harness {

class RulesError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The facts of the device a case runs on that rules may test.
struct DeviceFacts {
  std::string device_type = "cpu";   // "cpu" or "cuda"
  std::string libtorch_version;      // e.g. "2.13.0" (TORCH_VERSION), "1.13.0"
  double compute_capability = 0.0;   // e.g. 8.0; 0 on a CPU
};

struct Fix {
  std::map<std::string, std::string> set;  // axis -> new value, e.g. {"compute_dtype", "bf16"}
  std::string text;
};

struct Rule {
  std::string id;
  int line = 0;  // of the rule's entry in its file (1-based)
  // Case-axis conditions: axis -> accepted values (as spelled in matrix files).
  std::map<std::string, std::vector<std::string>> axes;
  std::vector<std::string> device_types;        // empty: any
  std::optional<std::string> libtorch_below, libtorch_at_least;
  std::optional<double> compute_capability_below, compute_capability_at_least;
  Outcome predict = Outcome::kOk;
  std::string why, detect, source;
  std::optional<Fix> fix;

  bool matches(const Case& c, const DeviceFacts& facts) const;
};

struct Rules {
  std::string source;  // the file they came from
  std::vector<Rule> rules;
  // The first rule whose condition holds (a valid Rules ends with a catch-all, so there is one).
  const Rule& match(const Case& c, const DeviceFacts& facts) const;
};

Rules load_rules(const std::string& path);
Rules parse_rules(const std::string& yaml_text, const std::string& source_name);

// The case with the fix's axes set (the device stays). Throws std::invalid_argument on an unknown
// axis or value (a parsed Fix never has one).
Case apply_fix(const Case& c, const Fix& fix);

// -1, 0, 1 as version a <, ==, > b, comparing dot-separated numbers ("2.13.0+cpu" reads as
// 2.13.0; missing parts count as 0). Throws std::invalid_argument on a version without a number.
int compare_versions(const std::string& a, const std::string& b);

}  // namespace qlc::harness
