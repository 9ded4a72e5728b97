// report.json: one versioned document per run: the environment and every record as the harness
// writes it (the record layout of qlc/harness/record.h), plus what the report adds per case
// (axes, as_predicted). Version 1; a change that removes or renames a key bumps it.
#include <ostream>

#include "qlc/reports/report.h"

namespace qlc::reports {

namespace {

constexpr int kReportJsonVersion = 1;

class JsonWriter : public Writer {
 public:
  std::string format() const override { return "json"; }
  std::string file_name() const override { return "report.json"; }

  void write(const RunData& run, std::ostream& out) const override {
    nlohmann::json doc = {{"report_version", kReportJsonVersion},
                          {"environment", run.environment},
                          {"truncated_tail", run.truncated_tail}};
    nlohmann::json cases = nlohmann::json::array();
    for (const auto& r : run.records) {
      nlohmann::json c = r.to_json();
      nlohmann::json axes = nlohmann::json::object();
      for (const auto& [name, value] : axes_of(r.case_id)) axes[name] = value;
      c["axes"] = axes;
      if (r.prediction) c["as_predicted"] = r.as_predicted();
      cases.push_back(std::move(c));
    }
    doc["cases"] = std::move(cases);
    // Records may hold raw worker output that is not UTF-8: replace, never throw.
    out << doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
};

}  // namespace

std::unique_ptr<Writer> make_json_writer() { return std::make_unique<JsonWriter>(); }

}  // namespace qlc::reports
