#include "qlc/harness/prediction.h"

namespace qlc::harness {

bool fix_applies_to(Outcome observed) {
  return observed != Outcome::kOk && observed != Outcome::kSkipped &&
         observed != Outcome::kHarnessError && observed != Outcome::kMachineFault;
}

const Rule& predict_and_verify_fix(const Rules& rules, const DeviceFacts& facts, const Case& c,
                            Record& record, const std::function<Record(const Case&)>& run_fixed) {
  const Rule& rule = rules.match(c, facts);
  Prediction p;
  p.outcome = rule.predict;
  p.rule = rule.id;
  p.why = rule.why;
  if (rule.fix) p.fix = rule.fix->text;
  record.prediction = p;
  if (!rule.fix || !fix_applies_to(record.outcome)) return rule;

  const Case fixed = apply_fix(c, *rule.fix);
  const Record result = run_fixed(fixed);
  FixCheck check;
  check.rule = rule.id;
  check.case_id = fixed.id();
  check.outcome = result.outcome;
  check.message = result.message;
  record.fix_check = check;
  return rule;
}

}  // namespace qlc::harness
