// compatibility.html: the merged table (merge.h, merged_table) as one self-contained page. The data
// is a JSON document embedded in a <script type="application/json">, every "<" written as \u003c
// so that no message can end the script element; merged_html_assets.cc builds the page from it
// with DOM calls and textContent only. The report.html style sheet is reused.
#include <ostream>

#include "document.h"
#include "html_assets.h"
#include "qlc/reports/merge.h"

namespace qlc::reports {

namespace {

nlohmann::json cell_json(const harness::Record& r) {
  nlohmann::json c = {{"case", r.case_id},
                      {"outcome", harness::to_string(r.outcome)},
                      {"message", r.message},
                      {"phase", harness::to_string(r.phase)}};
  if (r.outcome == harness::Outcome::kOk) c["step_ms"] = r.step_time.median_ms;
  if (r.prediction) {
    c["prediction"] = {{"outcome", harness::to_string(r.prediction->outcome)},
                       {"rule", r.prediction->rule},
                       {"why", r.prediction->why},
                       {"fix", r.prediction->fix}};
  }
  if (r.fix_check) {
    c["fix_check"] = {{"case", r.fix_check->case_id},
                      {"outcome", harness::to_string(r.fix_check->outcome)},
                      {"verified", r.fix_check->verified()}};
  }
  return c;
}

nlohmann::json page_data(const MergedTable& t) {
  nlohmann::json environments = nlohmann::json::array();
  for (const auto& s : t.environments) {
    environments.push_back({{"label", s.label}, {"cpu", s.cpu}, {"gpu", s.gpu},
                            {"libtorch", s.libtorch}, {"os", s.os}, {"revisions", s.revisions},
                            {"cases", s.cases}, {"runs", s.runs}});
  }
  nlohmann::json rows = nlohmann::json::array();
  for (size_t i = 0; i < t.rows.size(); ++i) {
    nlohmann::json cells = nlohmann::json::array();
    for (const harness::Record* r : t.cells[i]) cells.push_back(r ? cell_json(*r) : nlohmann::json());
    rows.push_back({{"key", t.rows[i]}, {"values", t.values[i]}, {"differs", bool(t.differs[i])},
                    {"cells", cells}});
  }
  return {{"environments", environments}, {"axes", t.axes}, {"constant", t.constant},
          {"rows", rows}};
}

}  // namespace

void write_merged_html(const std::vector<MergedEnvironment>& merged, std::ostream& out) {
  out << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
         "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
         "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
         "<link rel=\"icon\" href=\"data:,\">\n<title>QLoRA compatibility</title>\n<style>"
      << kReportHtmlCss << kMergedHtmlCss
      << "</style>\n</head>\n<body>\n<div id=\"app\"><noscript>This page needs JavaScript; "
         "compatibility.md beside it holds the same table.</noscript></div>\n"
         "<script id=\"merged-data\" type=\"application/json\">";
  write_json(page_data(merged_table(merged)), out, /*escape_lt=*/true);
  out << "</script>\n<script>" << kHtmlJsCommon << kMergedHtmlJs << "</script>\n</body>\n</html>\n";
}

}  // namespace qlc::reports
