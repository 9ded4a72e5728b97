// The qlora-compat subcommands. main.cc parses the command line (CLI11) into these option
// structs; each command returns the process exit status. A CliError is one line for the user.
#pragma once

#include <chrono>
#include <iosfwd>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "qlc/harness/case.h"
#include "qlc/harness/matrix.h"
#include "qlc/harness/record.h"
#include "qlc/harness/rules.h"

namespace qlc::harness::cli {

// Exit statuses (documented in `run --help`).
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 1;          // bad input: nothing or not everything ran
inline constexpr int kExitHarnessError = 2;   // the run completed, but a case hit our own bug
// The machine cut cases short (machine_fault: disk full, killed or stopped from outside) or
// stopped the run (disk full): --resume runs those cases again.
inline constexpr int kExitMachineFault = 3;
inline constexpr int kExitRegression = 4;     // `diff`: a case that worked in BASE fails in NEW

class CliError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Which cases: shared by `run` and `list`.
struct Selection {
  std::string matrix = "cases/default.yaml";
  std::string device;  // empty: the matrix's devices ("auto" resolved); else every case's
  std::string filter;
  std::string shard;   // "i/n", empty: all
};

struct RunOptions {
  Selection selection;
  int jobs = 0;     // 0: one per usable core, or usable cores / threads
  int threads = 0;  // LibTorch threads per worker; 0: usable cores / jobs (at least 1)
  bool serial_timings = false;  // then time each timed case again with nothing else running
  std::string out = "results";
  bool resume = false;
  double timeout_s = 600.0;
  int steps = 0;  // 0: the matrix's settings
  std::string isolation = "process";  // process (fork server), spawn, none
  std::string fault;  // tests only: KIND or KIND@ID-SUBSTRING
  bool keep_work = false;
  // Rules file for predictions and fix verification: empty means rules.yaml beside the matrix
  // file when there is one; "none" turns predictions off.
  std::string rules;
};

// The cores this process may use: its CPU affinity, lowered to its cgroup's CPU quota.
int usable_cores();

// Cases at a time and LibTorch threads per worker for `run` (parallelism.cc): what was asked,
// the rest from the usable cores so that jobs x threads = cores (in-process runs: one job).
struct Parallelism {
  int cores = 1;
  int jobs = 1;
  int threads = 1;
};
Parallelism choose_parallelism(int jobs, int threads, bool in_process);

// `check`: one case of a matrix as a test (ctest runs one per case).
struct CheckOptions {
  std::string case_id;
  std::string matrix = "cases/default.yaml";
  std::string rules;     // as RunOptions::rules, but required to exist (a check needs predictions)
  std::string out;       // the record goes to OUT/cases/<case id with '/' as '_'>.jsonl
  double timeout_s = 600.0;
  int steps = 0;
};

// `explain`: prediction, rule, audit and (from a records file) what happened and the fix check.
struct ExplainOptions {
  std::string case_id;
  std::string matrix = "cases/default.yaml";  // its settings (model preset) and rules beside it
  std::string rules;
  std::string records;  // optional records.jsonl to show the observation from
};

// `report`: the reports of a run folder (records.jsonl + environment.json), see reports/.
struct ReportOptions {
  std::string in;                    // the run folder
  std::string formats = "all";        // comma-separated, see reports::parse_formats
  std::string out;                   // empty: the run folder
  std::string rules;                 // optional rules file: each failure cause's "detect" text
};

// `merge`: runs (folders, report.json files, folders of them) into one table per environment.
struct MergeOptions {
  std::vector<std::string> inputs;
  std::string out;
};

// `diff BASE NEW`: outcome and timing changes; exit kExitRegression on a regression.
struct DiffOptions {
  std::string base;
  std::string next;
  std::string format = "text";  // text | json
};

struct WorkerArgs {
  std::string case_id;
  std::string settings_json;
  std::string record;
  std::string work_dir;
  std::string fault = "none";
  int threads = 0;
  long parent_pid = 0;
};

struct Selected {
  Matrix matrix;
  std::vector<Case> cases;  // after device, filter and shard
};
Selected select_cases(const Selection& s);

int run_command(const RunOptions& options);
int list_command(const Selection& selection, bool with_labels = false);
// Exit 0 when the observed outcome equals the prediction, 1 when not (both printed), 2 on a
// harness_error.
int check_command(const CheckOptions& options);
// Gathers OUT/cases/*.jsonl (written by `check`) into OUT/records.jsonl, prints the summary and
// writes every report format there (`rules`, optional: the failures' "detect" text).
int collect_command(const std::string& out, const std::string& rules = "");
int explain_command(const ExplainOptions& options);
// `export CASE --out DIR`: the case's inputs for a peer (qlc/harness/export.h); settings from the
// matrix file.
int export_command(const std::string& case_id, const std::string& matrix, const std::string& out);
// `classify` (hidden): the outcome of the message on stdin (harness_error when no pattern knows it).
int classify_command();
int env_command();
int report_command(const ReportOptions& options);
int merge_command(const MergeOptions& options);
int diff_command(const DiffOptions& options);
// Every report format of the run folder `dir`, written into it; the paths written. `rules`
// (optional) adds each failure cause's "detect" text. CliError on a bad run folder.
std::vector<std::string> write_run_reports(const std::string& dir, const std::string& rules);
[[noreturn]] void worker_command(const WorkerArgs& args);
int worker_server_command(long parent_pid);

// The path of this program (/proc/self/exe): what workers are spawned from.
std::string executable_path();
// The rules for a run over `matrix` (see RunOptions::rules); nullopt when there are none.
std::optional<Rules> load_run_rules(const std::string& rules, const std::string& matrix);

// CTest labels of a case: its axis values (nf4, bf16, adamw8bit, ...), "dq" with double
// quantization, and its device type (cpu / cuda).
std::vector<std::string> case_labels(const Case& c);

// "3m12s", "45s", "1h02m", "0.4s".
std::string format_duration(double seconds);

// The progress line on stderr: rewritten in place on a terminal, one line per finished case
// otherwise (logs). Thread-safe.
class Progress {
 public:
  Progress(size_t total, bool enabled);
  void started(const Case& c);
  void finished(const Case& c, const Record& r);
  void end();  // finishes the terminal line

 private:
  std::string eta() const;
  std::mutex mutex_;
  size_t total_;
  size_t done_ = 0;
  bool enabled_;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
};

// The plain summary of a run: counts per outcome, failures grouped by outcome and message.
struct SummaryInput {
  std::vector<Record> records;  // one per selected case that has one
  size_t selected = 0;
  size_t run_now = 0;
  size_t resumed = 0;
  double seconds = 0.0;
  std::string device_text;
  std::string environment_line;
  std::string records_path;
  std::string environment_path;
};
void print_summary(std::ostream& out, const SummaryInput& in);
// "predictions: N of M as predicted; fixes: ..." and each miss (nothing without predictions).
void print_predictions(std::ostream& out, const std::vector<Record>& records);

}  // namespace qlc::harness::cli
