// Predictions in records and fix verification (DESIGN.md "Rules, predictions and fixes").
#pragma once

#include <functional>

#include "qlc/harness/case.h"
#include "qlc/harness/record.h"
#include "qlc/harness/rules.h"

namespace qlc::harness {

// Whether a failure of this outcome is worth re-running with its rule's fix: the case ran and
// failed for a reason of the configuration (not ok, not skipped, not our own bug).
bool fix_applies_to(Outcome observed);

// Writes the prediction of the first matching rule into `record` (whose case is `c`) and, when
// the case failed (fix_applies_to) and that rule names a fix, runs the fixed case through
// `run_fixed` and records the result as record.fix_check. Returns the rule.
const Rule& predict_and_verify_fix(const Rules& rules, const DeviceFacts& facts, const Case& c,
                            Record& record, const std::function<Record(const Case&)>& run_fixed);

}  // namespace qlc::harness
