// `qlora-compat diff BASE NEW`: what changed between two runs (or two sets of runs), per
// environment (merge.h's environment_key): outcome changes, and step-time changes beyond the
// runs' own noise.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qlc/harness/outcome.h"
#include "qlc/reports/merge.h"

namespace qlc::reports {

enum class Change {
  kRegression,      // ok -> a failure (`qlora-compat diff` exits 4)
  kFix,             // a failure -> ok
  kChangedFailure,  // one failure -> another outcome class
  kSkipChanged,     // to or from skipped (neither works nor fails)
  kSlower,          // ok in both, median step time beyond the noise (see kNoiseFloor)
  kFaster,
  kOnlyInBase,      // the case has no record in NEW's environment
  kOnlyInNew,
};
std::string to_string(Change c);  // "regression", "fix", ...

// A step-time change counts only when the two runs' own spreads do not overlap and it is large:
//   slower: new median > base p90  and  new median >= kNoiseFloor x base median
//   faster: new p90 < base median  and  base median >= kNoiseFloor x new median
// The p90 is the run's own noise (90% of its timed steps were at most that), so the first half
// says "the typical new step is slower than almost every old one". The floor: in our runs the p90
// sits 3-27% above the median (cases/smoke.yaml, 8 timed steps), so a change under a quarter is
// within what one case's steps already scatter. Load on a shared machine moves every case
// together (two smoke runs of one build here: x0.90-x2.02 per case, median x1.33): the diff
// prints that overall ratio (median over the cases ok on both sides) so a reader can tell a
// machine-wide shift from one case's change; timing never fails a diff.
inline constexpr double kNoiseFloor = 1.25;

struct CaseChange {
  std::string case_id;  // NEW's id (BASE's for kOnlyInBase)
  Change change;
  harness::Outcome base_outcome = harness::Outcome::kOk, new_outcome = harness::Outcome::kOk;
  harness::Percentiles base_step, new_step;
  std::string message;  // NEW's first message line for a regression / changed failure
};

struct EnvironmentDiff {
  std::string base_label, new_label;  // equal unless one environment on each side was paired
  size_t compared = 0;                // cases with a record on both sides
  double overall_ratio = 0.0;         // median of new/base median step time, cases ok on both
  size_t timed = 0;                   // how many cases that median is over
  std::vector<CaseChange> changes;
};

struct DiffResult {
  std::vector<EnvironmentDiff> environments;
  std::vector<std::string> only_in_base, only_in_new;  // environments' labels
  size_t regressions() const;
};

// Pairs the environments of BASE and NEW by key; when each side has exactly one environment they
// are paired even if their keys differ (e.g. LibTorch 2.13 vs 1.13), and the labels say so.
// Cases are matched by id without the device part.
DiffResult diff_runs(const std::vector<MergedEnvironment>& base,
                     const std::vector<MergedEnvironment>& next);

void write_diff_text(const DiffResult& diff, std::ostream& out);
nlohmann::json diff_json(const DiffResult& diff);  // {"diff_version": 1, ...}

}  // namespace qlc::reports
