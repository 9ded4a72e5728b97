// See markdown_text.h.
#include "markdown_text.h"

#include <iomanip>
#include <sstream>

namespace qlc::reports {

std::string cell_text(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n' || c == '\r' || c == '\t') out += ' ';
    else if (c == '<') out += "&lt;";
    else if (c == '&') out += "&amp;";
    else out += c;
  }
  return out;
}

std::string fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

std::string outcome_mark(const harness::Record& r, bool with_time) {
  using harness::Outcome;
  std::string m = r.outcome == Outcome::kOk        ? "✅"
                  : r.outcome == Outcome::kSkipped ? "⏭️"
                                                   : "❌ " + harness::to_string(r.outcome);
  if (r.prediction && !r.as_predicted()) m += " ❗";
  if (with_time && r.outcome == Outcome::kOk) m += " " + fixed(r.step_time.median_ms, 1) + " ms";
  return m;
}

std::string axis_value(const std::vector<std::pair<std::string, std::string>>& axes,
                       const std::string& name) {
  std::string value, dq;
  for (const auto& [n, v] : axes) {
    if (n == name) value = v;
    if (n == "double_quant") dq = v;
  }
  if (name == "weights" && dq == "true") value += "+dq";
  return value.empty() ? "-" : value;
}

}  // namespace qlc::reports
