// Many runs in one table: `qlora-compat merge` and the docs table (docs/compatibility.md).
//
// Inputs are runs in any of their forms (load_inputs): a run folder (records.jsonl +
// environment.json), a report.json, a merge's output folder (its runs/), or a folder holding any
// of these (docs/runs). Each record goes to the column of its environment (environment_key); two
// runs of the same environment merge into one column, the later input winning for a case both
// have; different environments are never mixed.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qlc/harness/record.h"
#include "qlc/reports/report.h"

namespace qlc::reports {

// "Same environment": equal values of exactly these facts, for the device a case ran on (the
// device part of its id):
//   every case   device type (cpu / cuda), facts.libtorch.version
//   cpu cases    facts.cpu.model, facts.cpu.isa (the vector units pick LibTorch's CPU kernels)
//   cuda cases   the GPU's name and compute capability (facts.cuda.devices[N] for cuda:N),
//                facts.cuda.runtime_version
// Everything else (git revision, compiler, OS, kernel, driver, memory, core count) describes the
// run, not what a user with this device and LibTorch meets: it changes between nightly runs of one
// machine and must not split its column. The column shows the latest run's values of these.
struct EnvironmentKey {
  nlohmann::json fields;  // the facts above, as a JSON object (compared as a whole)
  std::string label;      // "CPU AMD EPYC · LibTorch 2.13.0", "NVIDIA H100 (sm_90) · LibTorch ..."
  std::string slug;       // file-name safe, unique: "cpu-amd-epyc-libtorch-2.13.0-1a2b3c"
};
EnvironmentKey environment_key(const nlohmann::json& environment, const std::string& case_id);

// A case's id without its device part ("nf4-dq/param=bf16/..."): how merge and diff match one case
// across environments (cpu/... on one machine, cuda:0/... on another).
std::string case_key(const std::string& case_id);

// The runs at `path` (see above), in a fixed order (a folder's entries by name). ReportError naming
// the file and what was expected: a folder with no run, a run folder without records.jsonl, an
// unreadable or malformed file, a report.json of another report_version.
std::vector<RunData> load_inputs(const std::string& path);
// All inputs in order; also refuses report.json files of mixed report versions, naming them.
std::vector<RunData> load_all_inputs(const std::vector<std::string>& paths);

// A report.json (report_version 1) read back as a run.
RunData load_report_json(const std::string& path);

// One column: the records of one environment from every run that had it.
struct MergedEnvironment {
  EnvironmentKey key;
  nlohmann::json environment;          // the environment.json of the last run that had it
  std::vector<std::string> sources;    // the runs merged, in input order
  std::vector<std::string> revisions;  // their git revisions, in input order, distinct
  std::vector<harness::Record> records;  // one per case, in order of first appearance
  std::vector<std::string> replaced;   // cases two runs had: the later run's record kept
};

// Groups the runs' records by environment, later runs winning; columns ordered by label (so the
// inputs' order changes which record wins, never the page's layout). ReportError for a run without an environment (it cannot be placed in a column).
std::vector<MergedEnvironment> merge_runs(const std::vector<RunData>& runs);

// What both merged pages show, computed once: an environment's facts, and the table with one row
// per case (matrix order) and one cell per environment.
struct EnvironmentSummary {
  std::string label, cpu, gpu, libtorch, os;
  std::string revisions;  // the merged runs' git revisions, comma-separated
  size_t cases = 0;
  std::string runs;       // "2 (3 cases in several: the later run's record)"
};
struct MergedTable {
  std::vector<EnvironmentSummary> environments;
  std::vector<std::string> axes;      // the axis columns: axes whose value varies (short names)
  std::vector<std::string> constant;  // "axis=value" that every case shares
  std::vector<std::string> rows;      // case keys, in the matrix's order
  std::vector<std::vector<std::string>> values;             // per row, one value per axis column
  std::vector<std::vector<const harness::Record*>> cells;   // per row, per environment (or null)
  std::vector<bool> differs;  // per row: its outcome is not the same in every environment
};
MergedTable merged_table(const std::vector<MergedEnvironment>& merged);

// The docs page: the environments, where their outcomes differ, and the whole table (one row per
// case, one column group per environment: outcome and median step time). Deterministic (no
// dates, no paths), so that the checked-in docs/compatibility.md can be compared byte for byte.
void write_merged_markdown(const std::vector<MergedEnvironment>& merged, std::ostream& out);

// The same table as one self-contained page (data and script inline, no network): cells coloured
// by outcome, filters by axis and "where the environments differ", a cell's details on click.
// Deterministic like the Markdown.
void write_merged_html(const std::vector<MergedEnvironment>& merged, std::ostream& out);

// OUT/compatibility.md, OUT/compatibility.html and, per environment, the merged column as a run
// folder, OUT/runs/<slug>/records.jsonl + environment.json (that of its latest run): the input of a
// later merge, diff or report. Each file atomically. Returns the paths written.
std::vector<std::string> write_merge(const std::vector<MergedEnvironment>& merged,
                                     const std::string& out_dir);

}  // namespace qlc::reports
