// What several writers share (private to reports/): the report.json document, which report.html
// embeds as its data, and the weight format a case is filed under.
#pragma once

#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "qlc/reports/report.h"

namespace qlc::reports {

// report.json's content (version kReportJsonVersion): {"report_version", "environment",
// "truncated_tail", "cases": [record + "axes" (+ "as_predicted" when predicted)]}, written case
// by case (one line each) rather than built whole: a run of 10,000 cases is written in a
// fraction of the time and memory. `escape_lt` writes every "<" as \u003c (same JSON value), so
// the text can sit inside an HTML <script> element. reports/schema/report.schema.json describes it.
constexpr int kReportJsonVersion = 1;
// One JSON value, compact (escape_lt as below; text that is not UTF-8 replaced).
void write_json(const nlohmann::json& j, std::ostream& out, bool escape_lt);
void write_report_document(const RunData& run, std::ostream& out, bool escape_lt = false);

// The loading a user chooses: the "weights" axis with "+dq" when double quantization is on
// (nf4+dq); "-" for an id without weights.
std::string weight_format(const std::vector<std::pair<std::string, std::string>>& axes);

}  // namespace qlc::reports
