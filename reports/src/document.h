// What several writers share (private to reports/): the report.json document, which report.html
// embeds as its data, and the weight format a case is filed under.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "qlc/reports/report.h"

namespace qlc::reports {

// report.json's content (version kReportJsonVersion): {"report_version", "environment",
// "truncated_tail", "cases": [record + "axes" (+ "as_predicted" when predicted)]}.
// reports/schema/report.schema.json describes it.
constexpr int kReportJsonVersion = 1;
nlohmann::json report_document(const RunData& run);

// The loading a user chooses: the "weights" axis with "+dq" when double quantization is on
// (nf4+dq); "-" for an id without weights.
std::string weight_format(const std::vector<std::pair<std::string, std::string>>& axes);

}  // namespace qlc::reports
