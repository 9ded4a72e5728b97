// `merge`: runs grouped into one column per environment (merge.h), and the docs page over them.
#include <algorithm>
#include <filesystem>
#include <map>
#include <ostream>
#include <set>

#include "atomic_file.h"
#include "markdown_text.h"
#include "qlc/harness/case.h"
#include "qlc/reports/merge.h"

namespace qlc::reports {

namespace fs = std::filesystem;
using harness::Outcome;
using harness::Record;

namespace {

std::string git_revision(const nlohmann::json& environment) {
  const nlohmann::json* at = &environment;
  for (const char* k : {"facts", "qlora_compat", "git_revision"}) {
    if (!at->is_object() || !at->contains(k)) return "unknown";
    at = &(*at)[k];
  }
  return at->is_string() ? at->get<std::string>() : at->dump();
}

std::string fact(const nlohmann::json& environment, std::initializer_list<const char*> path) {
  const nlohmann::json* at = &environment;
  for (const char* k : path) {
    if (!at->is_object() || !at->contains(k)) return "unknown";
    at = &(*at)[k];
  }
  return at->is_string() ? at->get<std::string>() : at->dump();
}

// The table's axis columns: every axis any record has except the device (the column group says
// it), double quantization folded into weights; `constant` gets those with one value everywhere.
std::vector<std::string> row_axes(const std::vector<MergedEnvironment>& merged,
                                  std::vector<std::string>* constant) {
  std::vector<std::string> names;
  std::map<std::string, std::set<std::string>> values;
  for (const auto& env : merged) {
    for (const Record& r : env.records) {
      const auto axes = axes_of(r.case_id);
      for (const auto& [name, value] : axes) {
        if (name == "device" || name == "double_quant") continue;
        if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
        values[name].insert(axis_value(axes, name));
      }
    }
  }
  std::vector<std::string> varying;
  for (const auto& n : names) {
    if (values[n].size() > 1 || names.size() == 1) {
      varying.push_back(n);
    } else {
      constant->push_back(n + "=" + *values[n].begin());
    }
  }
  return varying;
}

// Rows in the matrix's own order: each axis's values in the order the case model lists them
// (none, nf4, fp4, int8; fp32, fp16, bf16; ...), so a designed case sits next to its core sibling
// whatever order the runs finished in.
std::vector<size_t> matrix_order(const std::string& case_id) {
  std::vector<size_t> key;
  for (const auto& [name, value] : axes_of(case_id)) {
    if (name == "device") continue;
    size_t index = 1000;  // an axis or value the case model does not know: last
    for (const harness::AxisInfo& a : harness::case_axes()) {
      if (a.name != name) continue;
      const auto at = std::find(a.values.begin(), a.values.end(), value);
      if (at != a.values.end()) index = static_cast<size_t>(at - a.values.begin());
    }
    key.push_back(index);
  }
  return key;
}

// An axis as case ids spell it ("param" for param_dtype): narrower columns.
std::string short_name(const std::string& axis) {
  for (const harness::AxisInfo& a : harness::case_axes()) {
    if (a.name == axis && !a.id_key.empty()) return a.id_key;
  }
  return axis;
}

// One section per failure cause over every environment: the rule's why and fix as the records
// carry them (each run's report.md has the raw messages), and the cases it hit, where.
void write_causes(const std::vector<MergedEnvironment>& merged, std::ostream& out) {
  struct Cause {
    std::string why, fix;
    std::vector<std::string> cases;  // "`case` (environment)"
  };
  std::vector<std::string> order;
  std::map<std::string, Cause> causes;
  for (const auto& env : merged) {
    for (const Record& r : env.records) {
      if (r.outcome == Outcome::kOk || r.outcome == Outcome::kSkipped) continue;
      const bool explained = r.prediction && r.prediction->outcome == r.outcome;
      const std::string key = harness::to_string(r.outcome) + ": " +
                              (explained ? r.prediction->rule : r.message.substr(0, r.message.find('\n')));
      if (!causes.count(key)) {
        order.push_back(key);
        causes[key].why = explained && !r.prediction->why.empty() ? r.prediction->why : "no rule explains it";
        causes[key].fix = explained && !r.prediction->fix.empty() ? r.prediction->fix : "none known";
      }
      causes[key].cases.push_back("`" + case_key(r.case_id) + "` (" + env.key.label + ")");
    }
  }
  if (order.empty()) return;
  out << "\n## Why cases fail\n\n";
  for (const auto& key : order) {
    const Cause& c = causes[key];
    out << "### " << cell_text(key) << "\n\n- **Why:** " << c.why << "\n- **Fix:** " << c.fix
        << "\n- **Cases:** ";
    for (size_t i = 0; i < c.cases.size(); ++i) out << (i ? "; " : "") << c.cases[i];
    out << "\n\n";
  }
}

}  // namespace

std::string case_key(const std::string& case_id) {
  const size_t slash = case_id.find('/');
  return slash == std::string::npos ? case_id : case_id.substr(slash + 1);
}

std::vector<MergedEnvironment> merge_runs(const std::vector<RunData>& runs) {
  std::vector<MergedEnvironment> merged;
  std::vector<std::map<std::string, size_t>> position;  // per column: case key -> its record
  for (const RunData& run : runs) {
    if (!run.environment.is_object() || !run.environment.contains("facts")) {
      throw ReportError(run.dir + ": no environment facts (expected environment.json next to "
                        "records.jsonl, or \"environment\" in a report.json: merge puts each run "
                        "in the column of its environment)");
    }
    const std::string rev = git_revision(run.environment);
    for (const Record& r : run.records) {
      EnvironmentKey key = environment_key(run.environment, r.case_id);
      size_t col = 0;
      while (col < merged.size() && merged[col].key.fields != key.fields) ++col;
      if (col == merged.size()) {
        merged.push_back({});
        merged.back().key = std::move(key);
        position.emplace_back();
      }
      MergedEnvironment& env = merged[col];
      // Later inputs win: this run's environment and record replace what earlier runs gave.
      if (env.sources.empty() || env.sources.back() != run.dir) {
        env.environment = run.environment;
        env.sources.push_back(run.dir);
        if (std::find(env.revisions.begin(), env.revisions.end(), rev) == env.revisions.end()) {
          env.revisions.push_back(rev);
        }
      }
      const auto [at, added] = position[col].emplace(case_key(r.case_id), env.records.size());
      if (added) {
        env.records.push_back(r);
      } else {
        env.records[at->second] = r;
        env.replaced.push_back(r.case_id);
      }
    }
  }
  // Columns by label (CPU before GPUs, older LibTorch first), whatever the inputs' order: the
  // docs table must not change when the same runs come in another order.
  std::stable_sort(merged.begin(), merged.end(), [](const MergedEnvironment& a, const MergedEnvironment& b) {
    return a.key.label != b.key.label ? a.key.label < b.key.label : a.key.slug < b.key.slug;
  });
  return merged;
}

MergedTable merged_table(const std::vector<MergedEnvironment>& merged) {
  MergedTable t;
  for (const auto& env : merged) {
    const nlohmann::json& e = env.environment;
    EnvironmentSummary s;
    s.label = env.key.label;
    s.cpu = fact(e, {"facts", "cpu", "model"});
    s.gpu = "none";
    if (env.key.fields.value("device", "") == "cuda") {
      s.gpu = fact(env.key.fields, {"gpu"}) + ", compute capability " +
              fact(env.key.fields, {"compute_capability"}) + ", CUDA " +
              fact(env.key.fields, {"cuda_runtime"}) + ", driver " +
              fact(e, {"facts", "cuda", "driver_version"});
    }
    s.libtorch = fact(e, {"facts", "libtorch", "version"});
    s.os = fact(e, {"facts", "os", "name"});
    for (const auto& r : env.revisions) s.revisions += (s.revisions.empty() ? "" : ", ") + r;
    s.cases = env.records.size();
    s.runs = std::to_string(env.sources.size()) +
             (env.replaced.empty() ? ""
                                   : " (" + std::to_string(env.replaced.size()) +
                                         " cases in several: the later run's record)");
    t.environments.push_back(s);
  }
  // Rows: every case of any environment, in the matrix's order.
  std::map<std::string, std::vector<const Record*>> cells;
  for (size_t i = 0; i < merged.size(); ++i) {
    for (const Record& r : merged[i].records) {
      const std::string id = case_key(r.case_id);
      auto& cell = cells[id];
      if (cell.empty()) {
        t.rows.push_back(id);
        cell.assign(merged.size(), nullptr);
      }
      cell[i] = &r;
    }
  }
  std::map<std::string, std::vector<size_t>> order;
  for (const auto& id : t.rows) {
    for (const Record* r : cells[id]) {
      if (r) order[id] = matrix_order(r->case_id);
    }
  }
  std::stable_sort(t.rows.begin(), t.rows.end(), [&](const std::string& a, const std::string& b) {
    return order[a] != order[b] ? order[a] < order[b] : a < b;
  });
  const std::vector<std::string> axes = row_axes(merged, &t.constant);
  for (const auto& a : axes) t.axes.push_back(short_name(a));
  for (const auto& id : t.rows) {
    const auto& cell = cells[id];
    const Record* any = *std::find_if(cell.begin(), cell.end(), [](const Record* r) { return r; });
    const auto case_axes = axes_of(any->case_id);
    std::vector<std::string> values;
    for (const auto& a : axes) values.push_back(axis_value(case_axes, a));
    std::set<std::string> outcomes;
    for (const Record* r : cell) outcomes.insert(r ? harness::to_string(r->outcome) : "-");
    t.values.push_back(std::move(values));
    t.cells.push_back(cell);
    t.differs.push_back(outcomes.size() > 1);
  }
  return t;
}

void write_merged_markdown(const std::vector<MergedEnvironment>& merged, std::ostream& out) {
  out << "# QLoRA compatibility\n\n"
         "Which QLoRA precision settings train, per device and LibTorch build: each case is a few "
         "real training steps of `qlora-compat` (README). Generated by `qlora-compat merge`; do "
         "not edit by hand (README, \"Reports\", says how to regenerate it).\n\n";
  if (merged.empty()) {
    out << "No run has a record yet.\n";
    return;
  }
  const MergedTable t = merged_table(merged);
  out << "## Environments\n\n"
         "| environment | CPU | GPU | LibTorch | OS | git revision | cases | runs merged |\n"
         "|---|---|---|---|---|---|---|---|\n";
  for (const auto& s : t.environments) {
    out << "| " << cell_text(s.label) << " | " << cell_text(s.cpu) << " | " << cell_text(s.gpu)
        << " | " << cell_text(s.libtorch) << " | " << cell_text(s.os) << " | "
        << cell_text(s.revisions) << " | " << s.cases << " | " << s.runs << " |\n";
  }
  out << "\n";

  // Outcome counts per environment, in a fixed outcome order.
  std::vector<std::string> outcome_names;
  std::vector<std::map<std::string, size_t>> counts(merged.size());
  for (size_t i = 0; i < merged.size(); ++i) {
    for (const Record& r : merged[i].records) {
      const std::string o = harness::to_string(r.outcome);
      if (std::find(outcome_names.begin(), outcome_names.end(), o) == outcome_names.end()) {
        outcome_names.push_back(o);
      }
      ++counts[i][o];
    }
  }
  std::sort(outcome_names.begin(), outcome_names.end(), [](const std::string& a, const std::string& b) {
    return (a == "ok") != (b == "ok") ? a == "ok" : a < b;
  });
  out << "| outcome |";
  for (const auto& env : merged) out << " " << cell_text(env.key.label) << " |";
  out << "\n|---|";
  for (size_t i = 0; i < merged.size(); ++i) out << "---|";
  out << "\n";
  for (const auto& o : outcome_names) {
    out << "| " << o << " |";
    for (size_t i = 0; i < merged.size(); ++i) out << " " << counts[i][o] << " |";
    out << "\n";
  }
  out << "\n";

  auto write_table = [&](bool only_differing) {
    out << "|";
    for (const auto& a : t.axes) out << " " << cell_text(a) << " |";
    for (const auto& env : merged) out << " " << cell_text(env.key.label) << " | step ms |";
    out << "\n|";
    for (size_t i = 0; i < t.axes.size() + 2 * merged.size(); ++i) out << "---|";
    out << "\n";
    for (size_t row = 0; row < t.rows.size(); ++row) {
      if (only_differing && !t.differs[row]) continue;
      out << "|";
      for (const auto& v : t.values[row]) out << " " << cell_text(v) << " |";
      for (const Record* r : t.cells[row]) {
        if (!r) {
          out << " — |  |";
        } else {
          out << " " << outcome_mark(*r, false) << " | "
              << (r->outcome == Outcome::kOk ? fixed(r->step_time.median_ms, 1) : "") << " |";
        }
      }
      out << "\n";
    }
    out << "\n";
  };
  const std::string legend =
      "Legend: ✅ works (step ms: its median training step time) · ❌ CODE fails with that outcome "
      "(the run's report.md says why and how to fix it) · ⏭️ skipped · ❗ not what the rules "
      "predicted · — not run in that environment.";
  std::string every;
  for (const auto& c : t.constant) every += (every.empty() ? "" : ", ") + c;
  if (merged.size() > 1) {
    const size_t differing = static_cast<size_t>(std::count(t.differs.begin(), t.differs.end(), true));
    out << "## Where the environments differ\n\n";
    if (differing == 0) {
      out << "Every case has the same outcome in every environment.\n\n";
    } else {
      out << differing << " of " << t.rows.size() << " cases differ in outcome.\n\n";
      write_table(true);
    }
  }
  out << "## All cases\n\n" << t.rows.size() << " cases"
      << (every.empty() ? "" : "; every one has " + cell_text(every)) << ".\n\n";
  write_table(false);
  out << legend << "\n";
  write_causes(merged, out);
}

std::vector<std::string> write_merge(const std::vector<MergedEnvironment>& merged,
                                     const std::string& out_dir) {
  std::vector<std::string> written;
  const std::string page = (fs::path(out_dir) / "compatibility.md").string();
  write_file_atomically(page, [&](std::ostream& out) { write_merged_markdown(merged, out); });
  written.push_back(page);
  const std::string html = (fs::path(out_dir) / "compatibility.html").string();
  write_file_atomically(html, [&](std::ostream& out) { write_merged_html(merged, out); });
  written.push_back(html);
  // Each column as a run folder, the harness's own format (compact: one JSON line per case).
  for (const auto& env : merged) {
    const fs::path dir = fs::path(out_dir) / "runs" / env.key.slug;
    const std::string records = (dir / "records.jsonl").string();
    write_file_atomically(records, [&](std::ostream& out) {
      for (const Record& r : env.records) {
        out << r.to_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      }
    });
    const std::string environment = (dir / "environment.json").string();
    write_file_atomically(environment, [&](std::ostream& out) {
      out << env.environment.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    });
    written.push_back(records);
    written.push_back(environment);
  }
  return written;
}

}  // namespace qlc::reports
