// Pieces of Markdown shared by report.md and the merged table (private to reports/).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "qlc/harness/record.h"

namespace qlc::reports {

// A table cell's text on one row: pipes escaped; newlines and tabs become spaces; < and & as
// entities (GitHub renders raw HTML in tables).
std::string cell_text(const std::string& s);

// v with `digits` decimals.
std::string fixed(double v, int digits);

// One mark per case: ✅ ok, ⏭️ skipped or ❌ and the outcome code; " ❗" when it differs from the
// prediction; with `with_time`, an ok case's median step time ("✅ 12.5 ms").
std::string outcome_mark(const harness::Record& r, bool with_time = true);

// The value of one table axis for a case ("-" when it has none): "weights" folds in double
// quantization (nf4+dq), the loading a user chooses.
std::string axis_value(const std::vector<std::pair<std::string, std::string>>& axes,
                       const std::string& name);

}  // namespace qlc::reports
