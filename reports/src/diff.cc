// `diff`: outcome and step-time changes between two sets of runs, per environment (diff.h).
#include <algorithm>
#include <array>
#include <iomanip>
#include <map>
#include <ostream>
#include <sstream>

#include "markdown_text.h"
#include "qlc/reports/diff.h"

namespace qlc::reports {

using harness::Outcome;
using harness::Record;

namespace {

bool fails(Outcome o) { return o != Outcome::kOk && o != Outcome::kSkipped; }

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

EnvironmentDiff compare(const MergedEnvironment& base, const MergedEnvironment& next) {
  EnvironmentDiff d;
  d.base_label = base.key.label;
  d.new_label = next.key.label;
  std::map<std::string, const Record*> base_by_id;
  for (const Record& r : base.records) base_by_id[case_key(r.case_id)] = &r;
  std::map<std::string, bool> seen;
  std::vector<double> ratios;
  for (const Record& n : next.records) {
    const std::string id = case_key(n.case_id);
    seen[id] = true;
    auto it = base_by_id.find(id);
    CaseChange c;
    c.case_id = n.case_id;
    c.new_outcome = n.outcome;
    c.new_step = n.step_time;
    if (it == base_by_id.end()) {
      c.change = Change::kOnlyInNew;
      d.changes.push_back(c);
      continue;
    }
    const Record& b = *it->second;
    ++d.compared;
    c.base_outcome = b.outcome;
    c.base_step = b.step_time;
    if (b.outcome != n.outcome) {
      if (b.outcome == Outcome::kOk && fails(n.outcome)) {
        c.change = Change::kRegression;
      } else if (fails(b.outcome) && n.outcome == Outcome::kOk) {
        c.change = Change::kFix;
      } else if (fails(b.outcome) && fails(n.outcome)) {
        c.change = Change::kChangedFailure;
      } else {
        c.change = Change::kSkipChanged;
      }
      if (fails(n.outcome)) c.message = first_line(n.message);
      d.changes.push_back(c);
      continue;
    }
    if (n.outcome != Outcome::kOk || b.step_time.median_ms <= 0 || n.step_time.median_ms <= 0) {
      continue;
    }
    const double bm = b.step_time.median_ms, nm = n.step_time.median_ms;
    ratios.push_back(nm / bm);
    if (nm > b.step_time.p90_ms && nm >= kNoiseFloor * bm) {
      c.change = Change::kSlower;
      d.changes.push_back(c);
    } else if (n.step_time.p90_ms < bm && bm >= kNoiseFloor * nm) {
      c.change = Change::kFaster;
      d.changes.push_back(c);
    }
  }
  for (const Record& b : base.records) {
    if (seen.count(case_key(b.case_id))) continue;
    CaseChange c;
    c.case_id = b.case_id;
    c.change = Change::kOnlyInBase;
    c.base_outcome = b.outcome;
    c.base_step = b.step_time;
    d.changes.push_back(c);
  }
  if (!ratios.empty()) {
    std::sort(ratios.begin(), ratios.end());
    const size_t k = ratios.size();
    d.overall_ratio = k % 2 ? ratios[k / 2] : 0.5 * (ratios[k / 2 - 1] + ratios[k / 2]);
    d.timed = k;
  }
  // Worst first: regressions, then the rest in the enum's order; cases in their run order within.
  std::stable_sort(d.changes.begin(), d.changes.end(), [](const CaseChange& x, const CaseChange& y) {
    return static_cast<int>(x.change) < static_cast<int>(y.change);
  });
  return d;
}

std::string ms(const harness::Percentiles& p) {
  return fixed(p.median_ms, 1) + " / " + fixed(p.p90_ms, 1);
}

std::string ratio(const CaseChange& c) {
  if (c.base_step.median_ms <= 0) return "";
  return "x" + fixed(c.new_step.median_ms / c.base_step.median_ms, 2);
}

}  // namespace

std::string to_string(Change c) {
  switch (c) {
    case Change::kRegression: return "regression";
    case Change::kFix: return "fix";
    case Change::kChangedFailure: return "changed_failure";
    case Change::kSkipChanged: return "skip_changed";
    case Change::kSlower: return "slower";
    case Change::kFaster: return "faster";
    case Change::kOnlyInBase: return "only_in_base";
    case Change::kOnlyInNew: return "only_in_new";
  }
  return "unknown";
}

size_t DiffResult::regressions() const {
  size_t n = 0;
  for (const auto& e : environments) {
    for (const auto& c : e.changes) n += c.change == Change::kRegression;
  }
  return n;
}

DiffResult diff_runs(const std::vector<MergedEnvironment>& base,
                     const std::vector<MergedEnvironment>& next) {
  DiffResult result;
  if (base.size() == 1 && next.size() == 1) {
    result.environments.push_back(compare(base[0], next[0]));
    return result;
  }
  for (const auto& n : next) {
    auto b = std::find_if(base.begin(), base.end(),
                          [&](const MergedEnvironment& e) { return e.key.fields == n.key.fields; });
    if (b == base.end()) {
      result.only_in_new.push_back(n.key.label);
    } else {
      result.environments.push_back(compare(*b, n));
    }
  }
  for (const auto& b : base) {
    auto n = std::find_if(next.begin(), next.end(),
                          [&](const MergedEnvironment& e) { return e.key.fields == b.key.fields; });
    if (n == next.end()) result.only_in_base.push_back(b.key.label);
  }
  return result;
}

void write_diff_text(const DiffResult& diff, std::ostream& out) {
  for (const auto& e : diff.environments) {
    out << (e.base_label == e.new_label ? e.new_label : e.base_label + " -> " + e.new_label)
        << ": " << e.compared << " cases in both";
    if (e.timed) {
      out << "; step time overall x" << fixed(e.overall_ratio, 2) << " (median over " << e.timed
          << " cases ok on both sides)";
    }
    out << "\n";
    std::map<Change, size_t> count;
    for (const auto& c : e.changes) ++count[c.change];
    if (e.changes.empty()) {
      out << "  no change\n\n";
      continue;
    }
    // One aligned table: change, case, outcome before -> after, step ms median / p90 before ->
    // after (with the ratio for timing changes).
    std::vector<std::array<std::string, 4>> rows = {
        {"change", "case", "outcome", "step ms (median / p90)"}};
    for (const auto& c : e.changes) {
      std::string outcome, timing;
      switch (c.change) {
        case Change::kOnlyInBase:
          outcome = harness::to_string(c.base_outcome) + " -> (no record)";
          break;
        case Change::kOnlyInNew:
          outcome = "(no record) -> " + harness::to_string(c.new_outcome);
          break;
        case Change::kSlower:
        case Change::kFaster:
          outcome = "ok";
          timing = ms(c.base_step) + " -> " + ms(c.new_step) + "  " + ratio(c);
          break;
        default:
          outcome = harness::to_string(c.base_outcome) + " -> " + harness::to_string(c.new_outcome);
          if (!c.message.empty()) timing = "\"" + c.message.substr(0, 80) + "\"";
      }
      rows.push_back({to_string(c.change), c.case_id, outcome, timing});
    }
    std::array<size_t, 3> width{};
    for (const auto& r : rows) {
      for (size_t i = 0; i < 3; ++i) width[i] = std::max(width[i], r[i].size());
    }
    // Cases on one side only (a shard, a smaller matrix) are counted; the first few are shown.
    constexpr size_t kShownOneSided = 5;
    std::map<std::string, size_t> one_sided;
    for (const auto& r : rows) {
      if (r[0] == "only_in_base" || r[0] == "only_in_new") {
        if (++one_sided[r[0]] > kShownOneSided) continue;
      }
      out << "  ";
      for (size_t i = 0; i < 3; ++i) out << std::left << std::setw(static_cast<int>(width[i] + 2)) << r[i];
      out << r[3] << "\n";
    }
    for (const auto& [kind, n] : one_sided) {
      if (n > kShownOneSided) out << "  ... and " << n - kShownOneSided << " more " << kind << "\n";
    }
    out << "  totals:";
    for (const auto& [change, n] : count) out << " " << to_string(change) << " " << n << ";";
    out << "\n\n";
  }
  for (const auto& l : diff.only_in_base) out << l << ": only in BASE (not compared)\n";
  for (const auto& l : diff.only_in_new) out << l << ": only in NEW (not compared)\n";
  if (diff.environments.empty()) out << "no environment in common: nothing compared\n";
  out << "timing: a change counts when the new median is beyond the other run's p90 and at least x"
      << fixed(kNoiseFloor, 2) << " (see --help)\n";
  out << (diff.regressions() ? std::to_string(diff.regressions()) + " regression(s)\n"
                             : std::string("no regression\n"));
}

nlohmann::json diff_json(const DiffResult& diff) {
  nlohmann::json envs = nlohmann::json::array();
  for (const auto& e : diff.environments) {
    nlohmann::json changes = nlohmann::json::array();
    for (const auto& c : e.changes) {
      nlohmann::json j = {{"case", c.case_id}, {"change", to_string(c.change)}};
      if (c.change != Change::kOnlyInNew) {
        j["base"] = {{"outcome", harness::to_string(c.base_outcome)},
                     {"step", {{"median_ms", c.base_step.median_ms}, {"p90_ms", c.base_step.p90_ms}}}};
      }
      if (c.change != Change::kOnlyInBase) {
        j["new"] = {{"outcome", harness::to_string(c.new_outcome)},
                    {"step", {{"median_ms", c.new_step.median_ms}, {"p90_ms", c.new_step.p90_ms}}}};
      }
      if (!c.message.empty()) j["message"] = c.message;
      changes.push_back(std::move(j));
    }
    envs.push_back({{"base_environment", e.base_label},
                    {"new_environment", e.new_label},
                    {"compared", e.compared},
                    {"overall_step_ratio", e.timed ? nlohmann::json(e.overall_ratio) : nlohmann::json()},
                    {"changes", std::move(changes)}});
  }
  return {{"diff_version", 1},
          {"noise_floor", kNoiseFloor},
          {"environments", std::move(envs)},
          {"only_in_base", diff.only_in_base},
          {"only_in_new", diff.only_in_new},
          {"regressions", diff.regressions()}};
}

}  // namespace qlc::reports
