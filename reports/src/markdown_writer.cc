// report.md: the compatibility page of one run, for docs and for people bringing up a machine:
// a header (machine, LibTorch, revision, date, matrix settings), the compact table (one mark per
// case, with its median step time), one section per failure cause, and the timings.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <iomanip>
#include <map>
#include <ostream>
#include <set>
#include <sstream>

#include "markdown_text.h"
#include "qlc/reports/report.h"

namespace qlc::reports {

namespace {

using harness::Outcome;
using harness::Record;

std::string key_of(const std::vector<std::pair<std::string, std::string>>& axes,
                   const std::vector<std::string>& names) {
  std::string key;
  for (const auto& n : names) key += (key.empty() ? "" : " · ") + axis_value(axes, n);
  return key;
}

const nlohmann::json* find(const nlohmann::json& j, std::initializer_list<const char*> path) {
  const nlohmann::json* at = &j;
  for (const char* k : path) {
    if (!at->is_object() || !at->contains(k)) return nullptr;
    at = &(*at)[k];
  }
  return at;
}

std::string text_at(const nlohmann::json& j, std::initializer_list<const char*> path) {
  const nlohmann::json* v = find(j, path);
  if (!v || v->is_null()) return "unknown";
  return v->is_string() ? v->get<std::string>() : v->dump();
}

std::string utc_now() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::ostringstream s;
  s << std::put_time(&tm, "%Y-%m-%d %H:%M UTC");
  return s.str();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

class MarkdownWriter : public Writer {
 public:
  explicit MarkdownWriter(TableLayout layout) : layout_(std::move(layout)) {}
  std::string format() const override { return "md"; }
  std::string file_name() const override { return "report.md"; }

  void write(const RunData& run, std::ostream& out) const override {
    write_header(run, out);
    write_table(run, out);
    write_failures(run, out);
    write_timings(run, out);
  }

 private:
  void write_header(const RunData& run, std::ostream& out) const {
    const nlohmann::json& f =
        run.environment.is_object() && run.environment.contains("facts") ? run.environment["facts"]
                                                                          : nlohmann::json();
    out << "# qlora-compat report\n\n";
    out << "| | |\n|---|---|\n";
    out << "| machine | " << cell_text(text_at(f, {"cpu", "model"})) << ", "
        << cell_text(text_at(f, {"os", "name"})) << " |\n";
    const nlohmann::json* cuda = find(f, {"cuda", "available"});
    std::string gpu = "none";
    if (cuda && cuda->is_boolean() && cuda->get<bool>()) {
      gpu = text_at(f, {"cuda", "device_name"}) + " (compute capability " +
            text_at(f, {"cuda", "compute_capability"}) + "), driver " +
            text_at(f, {"cuda", "driver_version"});
    } else if (find(f, {"cuda", "reason"})) {
      gpu = "none (" + text_at(f, {"cuda", "reason"}) + ")";
    }
    out << "| GPU | " << cell_text(gpu) << " |\n";
    out << "| LibTorch | " << cell_text(text_at(f, {"libtorch", "version"})) << " |\n";
    out << "| git revision | " << cell_text(text_at(f, {"qlora_compat", "git_revision"}))
        << " |\n";
    out << "| environment | " << cell_text(text_at(run.environment, {"id"})) << " |\n";
    out << "| report written | " << utc_now() << " |\n";
    // Matrix settings as the records carry them (model preset, LoRA rank, steps run).
    std::set<std::string> models, ranks, steps;
    for (const auto& r : run.records) {
      if (!r.model.empty()) models.insert(r.model);
      if (r.lora_rank > 0) ranks.insert(std::to_string(r.lora_rank));
      if (r.outcome == Outcome::kOk) steps.insert(std::to_string(r.losses.size()));
    }
    auto joined = [](const std::set<std::string>& s) {
      std::string out;
      for (const auto& v : s) out += (out.empty() ? "" : ", ") + v;
      return out.empty() ? std::string("-") : out;
    };
    out << "| matrix | " << run.records.size() << " cases; model " << cell_text(joined(models))
        << "; LoRA rank " << joined(ranks) << "; steps run, warm-up included (cases that worked) " << joined(steps)
        << " |\n";
    // What was run, as `run` recorded it (runs older than environment.json's run.matrix lack it).
    if (find(run.environment, {"run", "matrix", "file"})) {
      const nlohmann::json& m = run.environment["run"]["matrix"];
      std::string what = text_at(m, {"file"});
      if (!text_at(m, {"filter"}).empty()) what += "; --filter " + text_at(m, {"filter"});
      if (!text_at(m, {"shard"}).empty()) what += "; --shard " + text_at(m, {"shard"});
      what += "; rules " + text_at(m, {"rules"});
      out << "| matrix file | " << cell_text(what) << " |\n";
      if (m.contains("settings") && m["settings"].is_object()) {
        std::string settings;
        for (const auto& [key, value] : m["settings"].items()) {
          settings += (settings.empty() ? "" : ", ") + key + " " + value.dump();
        }
        out << "| settings | " << cell_text(settings) << " |\n";
      }
    }
    if (run.truncated_tail) {
      out << "| note | the run was cut short: its last, unfinished record is left out |\n";
    }
    out << "\n";
  }

  void write_table(const RunData& run, std::ostream& out) const {
    // Rows and columns in order of first appearance (the matrix's own order).
    std::vector<std::string> rows, cols;
    std::map<std::pair<std::string, std::string>, std::vector<const Record*>> cells;
    for (const auto& r : run.records) {
      const auto axes = axes_of(r.case_id);
      const std::string row = key_of(axes, layout_.rows), col = key_of(axes, layout_.columns);
      if (std::find(rows.begin(), rows.end(), row) == rows.end()) rows.push_back(row);
      if (std::find(cols.begin(), cols.end(), col) == cols.end()) cols.push_back(col);
      cells[{row, col}].push_back(&r);
    }
    out << "## Compatibility\n\n";
    if (run.records.empty()) {
      out << "No case has a record in this run.\n\n";
      return;
    }
    auto names = [](const std::vector<std::string>& v) {
      std::string s;
      for (const auto& n : v) s += (s.empty() ? "" : " · ") + n;
      return s;
    };
    out << "| " << cell_text(names(layout_.rows)) << " \\ " << cell_text(names(layout_.columns))
        << " |";
    for (const auto& c : cols) out << " " << cell_text(c) << " |";
    out << "\n|---|";
    for (size_t i = 0; i < cols.size(); ++i) out << "---|";
    out << "\n";
    for (const auto& row : rows) {
      out << "| " << cell_text(row) << " |";
      for (const auto& col : cols) {
        auto it = cells.find({row, col});
        std::string text;
        if (it != cells.end()) {
          // Cases differing in an axis outside the table share a cell: one mark each.
          for (const Record* r : it->second) text += (text.empty() ? "" : "<br>") + outcome_mark(*r);
        }
        out << " " << text << " |";
      }
      out << "\n";
    }
    out << "\nLegend: ✅ works (median step time) · ❌ CODE fails with that outcome (see below) · "
           "⏭️ skipped · ❗ not what the rules predicted. Several marks in a cell: cases that "
           "differ in an axis outside the table (see report.csv).\n\n";
  }

  void write_failures(const RunData& run, std::ostream& out) const {
    // One cause per rule when rules predicted it, else per outcome and first message line.
    std::vector<std::string> order;
    std::map<std::string, std::vector<const Record*>> by_cause;
    for (const auto& r : run.records) {
      if (r.outcome == Outcome::kOk || r.outcome == Outcome::kSkipped) continue;
      std::string key = harness::to_string(r.outcome) + ": ";
      if (r.prediction && r.prediction->outcome == r.outcome && !r.prediction->rule.empty()) {
        key += r.prediction->rule;
      } else {
        key += r.message.substr(0, r.message.find('\n'));
      }
      if (!by_cause.count(key)) order.push_back(key);
      by_cause[key].push_back(&r);
    }
    out << "## Failures\n\n";
    if (order.empty()) out << "No case failed.\n\n";
    for (const auto& key : order) {
      const auto& cases = by_cause[key];
      const Record& first = *cases.front();
      out << "### " << cell_text(key) << "\n\n";
      out << "Raw message:\n\n";
      std::istringstream lines(first.message.empty() ? std::string("(no message)") : first.message);
      for (std::string line; std::getline(lines, line);) out << "    " << line << "\n";
      out << "\n";
      const bool predicted = first.prediction && first.prediction->outcome == first.outcome;
      const std::string rule = predicted ? first.prediction->rule : "";
      out << "- **Why:** "
          << (predicted && !first.prediction->why.empty() ? first.prediction->why
                                                            : "no rule explains it")
          << "\n";
      auto detect = run.detect_by_rule.find(rule);
      out << "- **Detect before training:** "
          << (detect != run.detect_by_rule.end() ? detect->second
                                                 : "`qlora-compat explain " + first.case_id + "`")
          << "\n";
      out << "- **Fix:** "
          << (predicted && !first.prediction->fix.empty() ? first.prediction->fix : "none known")
          << "\n";
      out << "- **Fix verified here:** ";
      if (first.fix_check) {
        out << (first.fix_check->verified() ? "yes" : "no, " + harness::to_string(first.fix_check->outcome))
            << " (`" << first.fix_check->case_id << "`)\n";
      } else {
        out << "not run\n";
      }
      out << "- **Cases (" << cases.size() << "):**\n";
      for (const Record* r : cases) out << "  - `" << r->case_id << "`\n";
      out << "\n";
    }
  }

  void write_timings(const RunData& run, std::ostream& out) const {
    out << "## Timings\n\n";
    std::vector<std::string> order;
    std::map<std::string, std::vector<const Record*>> by_weights;
    for (const auto& r : run.records) {
      if (r.outcome != Outcome::kOk) continue;
      const std::string w = axis_value(axes_of(r.case_id), "weights");
      if (!by_weights.count(w)) order.push_back(w);
      by_weights[w].push_back(&r);
    }
    if (order.empty()) {
      out << "No case worked, so there is nothing to time.\n";
      return;
    }
    out << "Per weight format, over the cases that worked: median of their median step times, "
           "tokens/s and peak memory; bits per base-weight parameter measured vs theory; the "
           "fastest case.\n\n";
    out << "| weights | cases | step ms | tokens/s | peak MiB | bits/param (theory) | fastest |\n"
           "|---|---|---|---|---|---|---|\n";
    for (const auto& w : order) {
      const auto& rs = by_weights[w];
      std::vector<double> step, tps, mem;
      const Record* fastest = rs.front();
      std::string bits;
      for (const Record* r : rs) {
        step.push_back(r->step_time.median_ms);
        tps.push_back(r->tokens_per_s);
        mem.push_back(static_cast<double>(r->peak_memory_bytes) / (1024.0 * 1024.0));
        if (r->step_time.median_ms < fastest->step_time.median_ms) fastest = r;
        // Distinct values only: a format's cases differ here when their param dtypes do.
        const std::string b = fixed(r->base_weight_bits_per_param, 3) + " (" +
                              fixed(r->theory_bits_per_param, 3) + ")";
        if (bits.find(b) == std::string::npos) bits += (bits.empty() ? "" : ", ") + b;
      }
      out << "| " << cell_text(w) << " | " << rs.size() << " | " << fixed(median(step), 1)
          << " | " << fixed(median(tps), 0) << " | " << fixed(median(mem), 1) << " | "
          << bits << " | `" << fastest->case_id << "` "
          << fixed(fastest->step_time.median_ms, 1) << " ms |\n";
    }
    // Timings taken while other cases ran share the machine: fine for finding what works, not
    // for comparing machines.
    size_t timed = 0, shared = 0, serial = 0;
    for (const auto& w : order) {
      for (const Record* r : by_weights[w]) {
        ++timed;
        shared += r->timings_shared ? 1 : 0;
        serial += r->timings_serial ? 1 : 0;
      }
    }
    if (shared > 0) {
      out << "\n" << shared << " of these " << timed
          << " cases were timed while other cases ran (`--jobs`): to compare machines, run "
             "with `--serial-timings`, which times each case again alone.\n";
    } else if (serial > 0) {
      out << "\nTimed one case at a time with nothing else running (`--serial-timings`).\n";
    }
  }

  TableLayout layout_;
};

}  // namespace

std::unique_ptr<Writer> make_markdown_writer(TableLayout layout) {
  return std::make_unique<MarkdownWriter>(std::move(layout));
}

}  // namespace qlc::reports
