// report.json: one versioned document per run: the environment and every record as the harness
// writes it (the record layout of qlc/harness/record.h), plus what the report adds per case
// (axes, as_predicted), one case a line. Version 1; a change that removes or renames a key bumps
// it, and reports/schema/report.schema.json follows.
#include <ostream>

#include "document.h"

namespace qlc::reports {

void write_json(const nlohmann::json& j, std::ostream& out, bool escape_lt) {
  // Non-UTF-8 text (raw worker output) is replaced, never thrown on.
  const std::string text = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (!escape_lt) {
    out << text;
    return;
  }
  // '<' only occurs inside JSON strings, where \u003c means the same character.
  size_t from = 0;
  for (size_t at = text.find('<'); at != std::string::npos; at = text.find('<', from)) {
    out.write(text.data() + from, static_cast<std::streamsize>(at - from));
    out << "\\u003c";
    from = at + 1;
  }
  out.write(text.data() + from, static_cast<std::streamsize>(text.size() - from));
}

void write_report_document(const RunData& run, std::ostream& out, bool escape_lt) {
  out << "{\n\"report_version\": " << kReportJsonVersion << ",\n\"environment\": ";
  write_json(run.environment, out, escape_lt);
  out << ",\n\"truncated_tail\": " << (run.truncated_tail ? "true" : "false")
      << ",\n\"cases\": [";
  bool first = true;
  for (const auto& r : run.records) {
    nlohmann::json c = r.to_json();
    nlohmann::json axes = nlohmann::json::object();
    for (auto& [name, value] : axes_of(r.case_id)) axes[name] = std::move(value);
    c["axes"] = std::move(axes);
    if (r.prediction) c["as_predicted"] = r.as_predicted();
    out << (first ? "\n" : ",\n");
    first = false;
    write_json(c, out, escape_lt);
  }
  out << "\n]\n}";
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
    write_report_document(run, out);
    out << "\n";
  }
};

}  // namespace

std::unique_ptr<Writer> make_json_writer() { return std::make_unique<JsonWriter>(); }

}  // namespace qlc::reports
