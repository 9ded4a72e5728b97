// report.csv: one row per case, every axis and figure a column, RFC 4180 quoting (a field with a
// comma, quote, CR or LF is quoted, its quotes doubled; lines end in CRLF as the RFC says).
#include <cmath>
#include <ostream>
#include <sstream>

#include "csv_field.h"
#include "qlc/reports/report.h"

namespace qlc::reports {

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

namespace {

std::string number(double v) {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  std::ostringstream s;
  s.precision(6);
  s << v;
  return s.str();
}

class CsvWriter : public Writer {
 public:
  std::string format() const override { return "csv"; }
  std::string file_name() const override { return "report.csv"; }

  void write(const RunData& run, std::ostream& out) const override {
    // The axis columns: every axis name any record has, in order of first appearance.
    const std::vector<std::string> axis_names = reports::axis_names(run);
    std::vector<std::string> header = {"case"};
    header.insert(header.end(), axis_names.begin(), axis_names.end());
    for (const char* h :
         {"outcome", "phase", "step", "predicted", "as_predicted", "rule", "fix_verified",
          "message", "skip_reason", "steps_run", "first_loss", "last_loss", "load_ms",
          "step_median_ms", "step_p90_ms", "forward_median_ms", "backward_median_ms",
          "optimizer_median_ms", "tokens_per_s", "peak_memory_bytes", "bits_per_param",
          "theory_bits_per_param", "wall_ms", "exit_code", "signal", "environment"}) {
      header.push_back(h);
    }
    write_row(out, header);
    for (const auto& r : run.records) {
      std::vector<std::string> row = {r.case_id};
      const auto axes = axes_of(r.case_id);
      for (const auto& name : axis_names) {
        std::string value;
        for (const auto& [n, v] : axes) {
          if (n == name) value = v;
        }
        row.push_back(value);
      }
      row.push_back(harness::to_string(r.outcome));
      row.push_back(harness::to_string(r.phase));
      row.push_back(std::to_string(r.step));
      row.push_back(r.prediction ? harness::to_string(r.prediction->outcome) : "");
      row.push_back(r.prediction ? (r.as_predicted() ? "true" : "false") : "");
      row.push_back(r.prediction ? r.prediction->rule : "");
      row.push_back(r.fix_check ? (r.fix_check->verified() ? "true" : "false") : "");
      row.push_back(r.message);
      row.push_back(r.skip_reason);
      row.push_back(std::to_string(r.losses.size()));
      row.push_back(r.losses.empty() ? "" : number(r.losses.front()));
      row.push_back(r.losses.empty() ? "" : number(r.losses.back()));
      for (double v : {r.load_ms, r.step_time.median_ms, r.step_time.p90_ms, r.forward.median_ms,
                       r.backward.median_ms, r.optimizer.median_ms, r.tokens_per_s}) {
        row.push_back(number(v));
      }
      row.push_back(std::to_string(r.peak_memory_bytes));
      row.push_back(number(r.base_weight_bits_per_param));
      row.push_back(number(r.theory_bits_per_param));
      row.push_back(number(r.wall_ms));
      row.push_back(std::to_string(r.exit_code));
      row.push_back(std::to_string(r.signal));
      row.push_back(r.environment_id);
      write_row(out, row);
    }
  }

 private:
  static void write_row(std::ostream& out, const std::vector<std::string>& fields) {
    for (size_t i = 0; i < fields.size(); ++i) out << (i ? "," : "") << csv_field(fields[i]);
    out << "\r\n";
  }
};

}  // namespace

std::unique_ptr<Writer> make_csv_writer() { return std::make_unique<CsvWriter>(); }

}  // namespace qlc::reports
