// qlora-compat: run / list / env (and the hidden `worker` the run spawns per case).
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "qlc/harness/matrix.h"
#include "qlc/harness/worker.h"

namespace {

using namespace qlc::harness::cli;

constexpr const char* kRunFooter =
    "Records: OUT/records.jsonl gets one JSON line per case the moment it ends; OUT/environment"
    ".json holds the machine's facts. An interrupted run continues with --resume.\n"
    "Exit status: 0 when every selected case has a record, whatever its outcome; 2 when a case "
    "ended in harness_error (a bug of qlora-compat); 3 when the machine cut cases short "
    "(machine_fault: disk full, killed or stopped from outside; a full disk also stops the run) "
    "and --resume would run them again; 1 on bad input (unknown axis value, "
    "malformed matrix, unwritable --out, ...) with one error line.";

void add_selection(CLI::App* cmd, Selection& s) {
  cmd->add_option("--matrix", s.matrix, "Matrix file (YAML)")->capture_default_str();
  cmd->add_option("--device", s.device,
                  "auto | cpu | cuda | cuda:N: run every case there (default: the matrix's "
                  "devices; auto = the first GPU if LibTorch can use one, else the CPU)");
  cmd->add_option("--filter", s.filter,
                  "Keep cases whose id contains any of these comma-separated substrings");
  cmd->add_option("--shard", s.shard, "Run shard i of n (1-based, e.g. 2/4)");
}

// A time limit in seconds: finite, > 0, at most a million (11 days). CLI11's PositiveNumber is not
// used: NaN passes it (every comparison is false) and its error prints DBL_MAX's 309 digits.
constexpr double kMaxTimeoutS = 1e6;
const CLI::Validator kTimeoutCheck(
    [](std::string& input) -> std::string {
      char* end = nullptr;
      const double v = std::strtod(input.c_str(), &end);
      if (end == input.c_str() || *end != '\0' || !std::isfinite(v) || v <= 0 || v > kMaxTimeoutS) {
        return "'" + input + "' is not a time limit: expected seconds, more than 0 and at most 1000000";
      }
      return std::string();
    },
    "SECONDS in (0, 1000000]");

}  // namespace

int main(int argc, char** argv) {
  // A write past the file size limit (RLIMIT_FSIZE, `ulimit -f`) then fails with EFBIG, which is
  // reported like a full disk, instead of killing the process. Workers and the fork server
  // inherit it (an ignored signal stays ignored across exec).
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{
      "qlora-compat: runs real QLoRA training steps for every combination of quantization and "
      "dtypes, and reports which work here, why the others fail, and how fast.",
      "qlora-compat"};
  // One line per bad input; set before the subcommands so that they inherit it.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("qlora-compat: error: ") + e.what() + " (see --help)\n";
  });
  app.require_subcommand(1);

  RunOptions run;
  CLI::App* run_cmd = app.add_subcommand("run", "Run the cases of a matrix and record them");
  add_selection(run_cmd, run.selection);
  run_cmd->add_option("--jobs,-j", run.jobs,
                      "Cases run at the same time, one worker each (default: usable cores / "
                      "--threads, so that jobs x threads = the usable cores)")
      ->check(CLI::Range(1, 1024));
  run_cmd->add_option("--threads", run.threads,
                      "LibTorch threads per worker (default: usable cores / jobs, at least 1)")
      ->check(CLI::Range(1, 1024));
  run_cmd->add_flag("--serial-timings", run.serial_timings,
                    "After the run, time every case that trained again, one at a time with "
                    "nothing else running and every usable core, and record those timings "
                    "(outcomes stay the parallel run's): for comparing timings across machines");
  run_cmd->add_option("--out,-o", run.out, "Output folder")->capture_default_str();
  run_cmd->add_flag("--resume", run.resume,
                    "Continue the run recorded in OUT: skip cases that already have a record");
  run_cmd->add_option("--timeout", run.timeout_s, "Time limit per case in seconds")
      ->capture_default_str()
      ->check(kTimeoutCheck);
  run_cmd->add_option("--steps", run.steps, "Timed training steps per case (default: the matrix's)")
      ->check(CLI::Range(1, qlc::harness::kMaxSteps));
  run_cmd->add_option("--isolation", run.isolation,
                      "process: each case in a fresh worker process, forked from a server that "
                      "has loaded LibTorch once; spawn: each worker started from scratch "
                      "(slower start); none: in this process (debugging: a crash ends the run)")
      ->capture_default_str()
      ->check(CLI::IsMember({"process", "spawn", "none"}));
  run_cmd->add_option("--rules", run.rules,
                      "Rules file: each record gets the prediction of the first matching rule, "
                      "and a failed case whose rule names a fix runs again with the fix applied "
                      "(default: rules.yaml beside the matrix file, if any; 'none': no rules)");
  run_cmd->add_flag("--keep-work", run.keep_work,
                    "Keep each case's scratch folder (checkpoint, worker log) under OUT/work");
  run_cmd->add_option("--fault", run.fault, "Fault injection for tests: KIND[@ID-SUBSTRING]")
      ->group("");  // hidden: tests only
  run_cmd->footer(kRunFooter);

  Selection list;
  CLI::App* list_cmd =
      app.add_subcommand("list", "Print the ids of the cases a run would run (a dry run)");
  add_selection(list_cmd, list);
  bool list_labels = false;
  list_cmd->add_flag("--labels", list_labels,
                     "After each id, a tab and its CTest labels, comma-separated (axis values, dq, device type)");

  CheckOptions check;
  CLI::App* check_cmd = app.add_subcommand(
      "check", "Run one case and compare what happens with the rules' prediction (a ctest test)");
  check_cmd->add_option("case", check.case_id, "Case id (see `list`)")->required();
  check_cmd->add_option("--matrix", check.matrix, "Matrix file the case belongs to")
      ->capture_default_str();
  check_cmd->add_option("--rules", check.rules,
                        "Rules file (default: rules.yaml beside the matrix file)");
  check_cmd->add_option("--out,-o", check.out, "Results folder; the record goes to OUT/cases/")
      ->required();
  check_cmd->add_option("--timeout", check.timeout_s, "Time limit in seconds")
      ->capture_default_str()
      ->check(kTimeoutCheck);
  check_cmd->add_option("--steps", check.steps, "Timed training steps (default: the matrix's)")
      ->check(CLI::Range(1, qlc::harness::kMaxSteps));
  check_cmd->footer(
      "Exit status: 0 when the observed outcome equals the prediction, 1 when it does not (both "
      "are printed with the rule, its cause and fix, and the raw message), 2 on a harness_error. "
      "A failed case whose rule names a fix runs again with the fix applied; the record says "
      "whether the fix worked.");

  ExplainOptions explain;
  CLI::App* explain_cmd = app.add_subcommand(
      "explain", "Why a case works or fails here: prediction, cause, detection, fix, dtype audit");
  explain_cmd->add_option("case", explain.case_id, "Case id (see `list`); device auto allowed")
      ->required();
  explain_cmd->add_option("--matrix", explain.matrix, "Matrix whose settings (model) apply")
      ->capture_default_str();
  explain_cmd->add_option("--rules", explain.rules,
                          "Rules file (default: rules.yaml beside the matrix file)");
  explain_cmd->add_option("--records", explain.records,
                          "A run's records.jsonl: also show what happened and the fix check");

  std::string export_case_id, export_matrix = "cases/default.yaml", export_out;
  CLI::App* export_cmd = app.add_subcommand(
      "export", "Write a case's checkpoint, batch, LoRA start and settings for a peer to train on");
  export_cmd->add_option("case", export_case_id, "Case id (see `list`)")->required();
  export_cmd->add_option("--matrix", export_matrix, "Matrix whose settings apply")->capture_default_str();
  export_cmd->add_option("--out,-o", export_out, "Folder for the files")->required();

  CLI::App* classify_cmd = app.add_subcommand(
      "classify", "Print the outcome the harness's message table gives the text on stdin");
  classify_cmd->group("");  // hidden: the peer cross-check classifies its peer's errors with it

  std::string collect_out, collect_rules;
  CLI::App* collect_cmd = app.add_subcommand(
      "collect", "Gather the records `check` left in OUT/cases into OUT/records.jsonl, summarize, "
                 "and write every report format there (see `report`)");
  collect_cmd->add_option("--out,-o", collect_out, "Results folder of the checks")->required();
  collect_cmd->add_option("--rules", collect_rules,
                          "Rules file the checks used: adds each failure cause's 'detect' text "
                          "to the reports");

  ReportOptions report;
  CLI::App* report_cmd = app.add_subcommand(
      "report", "Write a run's reports (report.md, report.csv, report.json, junit.xml, "
                "report.html) from its records");
  report_cmd->add_option("--in", report.in, "Run folder (with records.jsonl)")->required();
  report_cmd->add_option("--format", report.formats,
                         "Comma-separated: md, csv, json, junit, html, or all")
      ->capture_default_str();
  report_cmd->add_option("--out,-o", report.out, "Folder for the reports (default: the run folder)");
  report_cmd->add_option("--rules", report.rules,
                         "Rules file the run used: adds each failure cause's 'detect' text");
  report_cmd->footer("Prints the path of each file written. Exit status 1 on a missing or "
                     "malformed run folder (the error names the file and line).");

  MergeOptions merge;
  CLI::App* merge_cmd = app.add_subcommand(
      "merge", "Merge runs from many machines into one table, a column group per environment");
  merge_cmd->add_option("inputs", merge.inputs,
                        "Run folders (records.jsonl + environment.json), report.json files, a "
                        "merge's output folder, or folders holding runs (docs/runs)")
      ->required();
  merge_cmd->add_option("--out,-o", merge.out, "Folder for compatibility.md and runs/")->required();
  merge_cmd->footer(
      "Writes OUT/compatibility.md (Markdown; no HTML yet) and OUT/runs/<environment>/ "
      "(records.jsonl + environment.json: each column as a run folder, the input of a later "
      "merge, diff or report).\n"
      "Same environment = same device type, LibTorch version and, for the CPU, CPU model and "
      "instruction sets, for a GPU, its name, compute capability and CUDA runtime; git revision, "
      "compiler, OS and driver may differ (README, \"Reports\"). Two runs of one environment make "
      "one column: for a case both have, the later on the command line wins (and the output says "
      "so); different environments are never mixed. Exit status 1 on bad input.");

  DiffOptions diff;
  CLI::App* diff_cmd = app.add_subcommand(
      "diff", "What changed from BASE to NEW: regressions, fixes, changed failures, timing");
  diff_cmd->add_option("base", diff.base, "Run, report.json, merge output or folder of runs")
      ->required();
  diff_cmd->add_option("new", diff.next, "The same for the newer run(s)")->required();
  diff_cmd->add_option("--format", diff.format, "text (an aligned table) or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
  diff_cmd->footer(
      "Environments are paired as merge defines them (one on each side: paired whatever they "
      "are); cases by id without the device. Changes: regression (ok -> a failure), fix (a "
      "failure -> ok), changed_failure (one failure -> another), skip_changed, only_in_base / "
      "only_in_new, and slower / faster for cases ok on both sides: the new median step time "
      "beyond the other run's p90 (the run's own noise) and by at least x1.25 (a case's steps "
      "already scatter up to about a quarter around their median). Each environment's line also "
      "gives the overall step-time ratio (median over the cases ok on both sides): load on a shared "
      "machine moves every case together.\n"
      "Exit status: 0 without a regression, 4 with one (timing changes never fail), 1 on bad "
      "input.");

  CLI::App* env_cmd = app.add_subcommand(
      "env", "Print this machine's environment facts (JSON), as recorded with every run");

  WorkerArgs worker;
  CLI::App* worker_cmd = app.add_subcommand("worker", "Run one case (spawned by `run`)");
  worker_cmd->group("");  // hidden
  worker_cmd->add_option("--case", worker.case_id)->required();
  worker_cmd->add_option("--settings-json", worker.settings_json)->required();
  worker_cmd->add_option("--record", worker.record)->required();
  worker_cmd->add_option("--work-dir", worker.work_dir)->required();
  worker_cmd->add_option("--fault", worker.fault);
  worker_cmd->add_option("--threads", worker.threads);
  worker_cmd->add_option("--parent-pid", worker.parent_pid);

  // Set last: subcommands copy their parent's footer when they are added.
  app.footer("Run `qlora-compat COMMAND --help` for a command's options.");

  // CLI11 would report a mistyped command as "A subcommand is required": name it instead.
  if (argc > 1 && argv[1][0] != '-') {
    const std::string command = argv[1];
    if (command != "run" && command != "list" && command != "env" && command != "check" &&
        command != "collect" && command != "report" && command != "merge" && command != "diff" && command != "explain" && command != "export" && command != "classify" && command != "worker" &&
        command != "worker-server") {
      std::fprintf(stderr,
                   "qlora-compat: error: unknown command '%s' (expected run, list, env, check, "
                   "collect, report, merge, diff, explain or export; see --help)\n",
                   command.c_str());
      return kExitUsage;
    }
  }

  long server_parent = 0;
  CLI::App* server_cmd =
      app.add_subcommand("worker-server", "Fork workers on request (started by `run`)");
  server_cmd->group("");  // hidden
  server_cmd->add_option("--parent-pid", server_parent);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // prints the help (rc 0) or the one error line
    if (rc == 0) return kExitOk;
    // A worker with bad arguments is our bug: the parent knows this exit code.
    if (argc > 1 && std::string(argv[1]).rfind("worker", 0) == 0) {
      return qlc::harness::kWorkerExitUsage;
    }
    return kExitUsage;
  }

  try {
    if (*run_cmd) return run_command(run);
    if (*list_cmd) return list_command(list, list_labels);
    if (*check_cmd) return check_command(check);
    if (*collect_cmd) return collect_command(collect_out, collect_rules);
    if (*explain_cmd) return explain_command(explain);
    if (*export_cmd) return export_command(export_case_id, export_matrix, export_out);
    if (*classify_cmd) return classify_command();
    if (*report_cmd) return report_command(report);
    if (*merge_cmd) return merge_command(merge);
    if (*diff_cmd) return diff_command(diff);
    if (*env_cmd) return env_command();
    if (*worker_cmd) worker_command(worker);
    if (*server_cmd) return worker_server_command(server_parent);
  } catch (const CliError& e) {
    std::fprintf(stderr, "qlora-compat: error: %s\n", e.what());
    return kExitUsage;
  } catch (const qlc::harness::MatrixError& e) {
    std::fprintf(stderr, "qlora-compat: error: %s\n", e.what());
    return kExitUsage;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qlora-compat: error: %s\n", e.what());
    return kExitUsage;
  }
  return kExitUsage;
}
