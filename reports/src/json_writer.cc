// report.json: one versioned document per run: the environment and every record as the harness
// writes it (the record layout of qlc/harness/record.h), plus what the report adds per case
// (axes, as_predicted). Version 1; a change that removes or renames a key bumps it, and
// reports/schema/report.schema.json follows.
#include <ostream>

#include "document.h"

namespace qlc::reports {

nlohmann::json report_document(const RunData& run) {
  nlohmann::json doc = {{"report_version", kReportJsonVersion},
                        {"environment", run.environment},
                        {"truncated_tail", run.truncated_tail}};
  nlohmann::json cases = nlohmann::json::array();
  for (const auto& r : run.records) {
    nlohmann::json c = r.to_json();
    nlohmann::json axes = nlohmann::json::object();
    for (const auto& [name, value] : axes_of(r.case_id)) axes[name] = value;
    c["axes"] = std::move(axes);
    if (r.prediction) c["as_predicted"] = r.as_predicted();
    cases.push_back(std::move(c));
  }
  doc["cases"] = std::move(cases);
  return doc;
}

std::string weight_format(const std::vector<std::pair<std::string, std::string>>& axes) {
  std::string weights, dq;
  for (const auto& [name, value] : axes) {
    if (name == "weights") weights = value;
    if (name == "double_quant") dq = value;
  }
  if (weights.empty()) return "-";
  return dq == "true" ? weights + "+dq" : weights;
}

namespace {

class JsonWriter : public Writer {
 public:
  std::string format() const override { return "json"; }
  std::string file_name() const override { return "report.json"; }

  void write(const RunData& run, std::ostream& out) const override {
    // Records may hold raw worker output that is not UTF-8: replace, never throw.
    out << report_document(run).dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
        << "\n";
  }
};

}  // namespace

std::unique_ptr<Writer> make_json_writer() { return std::make_unique<JsonWriter>(); }

}  // namespace qlc::reports
