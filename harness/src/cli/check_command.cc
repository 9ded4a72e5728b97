// `qlora-compat check` and `qlora-compat collect`: the case tests. CTest runs one `check` per case
// of the default matrix (cmake/QlcCaseTests.cmake); each runs its case in a worker, compares what
// happened with what cases/rules.yaml predicts, runs the rule's fix for a failure, and leaves its
// record in OUT/cases/. `collect` (a CTest fixture after them) gathers those records into
// OUT/records.jsonl, prints the run's summary and writes every report format next to them, so
// `ctest` alone leaves the results behind.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>

#include "commands.h"
#include <unistd.h>

#include "qlc/harness/audit.h"
#include "qlc/harness/environment.h"
#include "qlc/harness/prediction.h"
#include "qlc/harness/worker.h"

namespace qlc::harness::cli {
namespace fs = std::filesystem;
namespace {

std::string file_name_of(const std::string& case_id) {
  std::string name = case_id;
  for (char& ch : name) {
    if (ch == '/' || ch == ':') ch = '_';
  }
  return name + ".jsonl";
}

// The GPU CTest allocated to this test (resource allocation, RESOURCE_GROUPS "gpus:1"):
// CTEST_RESOURCE_GROUP_0_GPUS is "id:N,slots:1". Empty when ctest ran without a resource spec.
std::string allocated_gpu() {
  const char* count = std::getenv("CTEST_RESOURCE_GROUP_COUNT");
  const char* gpus = std::getenv("CTEST_RESOURCE_GROUP_0_GPUS");
  if (count == nullptr || gpus == nullptr) return "";
  const std::string spec = gpus;
  if (spec.rfind("id:", 0) != 0) {
    throw CliError("CTEST_RESOURCE_GROUP_0_GPUS='" + spec + "': expected id:N,slots:1");
  }
  const std::string id = spec.substr(3, spec.find(',') - 3);
  if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos) {
    throw CliError("CTEST_RESOURCE_GROUP_0_GPUS='" + spec + "': the GPU id must be a number");
  }
  return "cuda:" + id;
}

void print_rule(std::ostream& out, const Rules& rules, const Rule& rule) {
  out << "  rule:     " << rule.id << " (" << rules.source << ":" << rule.line << ")\n";
  out << "  why:      " << rule.why << "\n";
  out << "  detect:   " << rule.detect << "\n";
  if (rule.fix) out << "  fix:      " << rule.fix->text << "\n";
}

}  // namespace

int check_command(const CheckOptions& o) {
  // An id of the original core (five parts) names the same case in its full spelling.
  std::string wanted = o.case_id;
  try {
    const Case parsed = Case::from_id(o.case_id);
    if (parsed.device != "auto") wanted = parsed.id();
  } catch (const std::invalid_argument& e) {
    // Say what is wrong with the id itself (as `explain` does), not blame a --filter.
    throw CliError(std::string("case id: ") + e.what());
  }
  Selection selection;  // no filter: the id is compared whole below
  selection.matrix = o.matrix;
  Selected sel = select_cases(selection);
  const Case* chosen = nullptr;
  for (const auto& c : sel.cases) {
    if (c.id() == wanted) chosen = &c;
  }
  if (chosen == nullptr) {
    throw CliError("case '" + o.case_id + "' is not a case of " + o.matrix +
                   " (qlora-compat list --matrix " + o.matrix + " lists them)");
  }
  Case c = *chosen;
  const std::string gpu = allocated_gpu();
  if (!gpu.empty() && c.device.rfind("cuda", 0) == 0) c.device = gpu;
  const std::optional<Rules> rules = load_run_rules(o.rules, o.matrix);
  if (!rules) throw CliError("check needs rules: no rules.yaml beside " + o.matrix + " (--rules FILE)");
  RunSettings settings = sel.matrix.settings;
  if (o.steps > 0) settings.steps = o.steps;

  const fs::path cases_dir = fs::path(o.out) / "cases";
  std::error_code ec;
  fs::create_directories(cases_dir, ec);
  if (ec) throw CliError("cannot create '" + cases_dir.string() + "': " + ec.message());
  const fs::path record_path = cases_dir / file_name_of(c.id());
  fs::remove(record_path, ec);  // this check's own record of an earlier ctest run

  WorkerOptions opts;
  opts.executable = executable_path();
  opts.timeout_s = o.timeout_s;
  // A scratch folder per check process: ctest -j runs checks at once, and a check's fix run can
  // be another test's own case; under one shared folder the two would delete each other's files.
  opts.work_dir = (fs::path(o.out) / "work" / ("check-" + std::to_string(::getpid()))).string();
  auto run = [&](const Case& k) { return run_case_in_worker(k, settings, opts); };
  const DeviceFacts facts = device_facts(c.device);
  Record r = run(c);
  const Rule& rule = predict_and_verify_fix(*rules, facts, c, r, run);
  fs::remove(opts.work_dir, ec);  // the per-process folder, empty unless a worker kept its files
  r.environment_id = capture_environment().id();
  append_record(record_path.string(), r);

  const bool ok = r.as_predicted() && r.outcome != Outcome::kHarnessError;
  std::ostream& out = std::cout;
  out << (ok ? "as predicted: " : "NOT AS PREDICTED: ") << c.id() << "\n";
  out << "  predicted " << to_string(r.prediction->outcome) << ", observed " << to_string(r.outcome);
  if (r.phase != Phase::kNone) out << " in phase " << to_string(r.phase);
  out << "\n";
  if (!r.message.empty()) out << "  message:  " << r.message << "\n";
  if (!r.skip_reason.empty()) out << "  skipped:  " << r.skip_reason << "\n";
  print_rule(out, *rules, rule);
  if (r.fix_check) {
    out << "  fix " << (r.fix_check->verified() ? "verified" : "failed") << ": "
        << r.fix_check->case_id << " -> " << to_string(r.fix_check->outcome) << "\n";
  }
  out << "  record:   " << record_path.string() << "\n";
  if (r.outcome == Outcome::kHarnessError) return kExitHarnessError;
  return ok ? kExitOk : 1;
}

int explain_command(const ExplainOptions& o) {
  Selection selection;
  selection.matrix = o.matrix;
  const Selected sel = select_cases(selection);
  Case c;
  try {
    c = Case::from_id(o.case_id);
  } catch (const std::invalid_argument& e) {
    throw CliError(std::string("case id: ") + e.what());
  }
  if (c.device == "auto") c.device = resolve_auto_device();
  const std::optional<Rules> rules = load_run_rules(o.rules, o.matrix);
  if (!rules) throw CliError("explain needs rules: no rules.yaml beside " + o.matrix + " (--rules FILE)");
  const DeviceFacts facts = device_facts(c.device);
  const Rule& rule = rules->match(c, facts);

  std::ostream& out = std::cout;
  out << c.id() << "\n";
  out << "  device:   " << facts.device_type << ", LibTorch " << facts.libtorch_version;
  if (facts.compute_capability > 0) out << ", compute capability " << facts.compute_capability;
  out << "\n  predicted " << to_string(rule.predict) << "\n";
  print_rule(out, *rules, rule);
  if (rule.fix) out << "  fixed case: " << apply_fix(c, *rule.fix).id() << "\n";

  const fs::path work = fs::temp_directory_path() / ("qlc-explain-" + std::to_string(getpid()));
  const std::vector<AuditFinding> findings = audit_case(c, sel.matrix.settings, work.string());
  std::error_code ec;
  fs::remove_all(work, ec);
  size_t problems = 0;
  for (const auto& f : findings) problems += !f.problem.empty();
  out << "\naudit: " << findings.size() << " places where dtypes meet, " << problems
      << (problems == 1 ? " problem" : " problems") << "\n";
  for (const auto& f : findings) {
    out << "  " << (f.problem.empty() ? "ok   " : "FAIL ") << f.tensor << " [" << f.dtype
        << "] meets " << f.meets << "\n";
    if (!f.problem.empty()) out << "       -> " << f.problem << "\n";
  }

  if (!o.records.empty()) {
    std::optional<Record> last;
    for (auto& r : read_records(o.records)) {
      if (r.case_id == c.id()) last = std::move(r);
    }
    out << "\nrecorded in " << o.records << ": ";
    if (!last) {
      out << "no record of this case\n";
    } else {
      out << "observed " << to_string(last->outcome)
          << (last->as_predicted() ? " (as predicted)" : last->prediction ? " (NOT as predicted)" : "")
          << "\n";
      if (!last->message.empty()) out << "  message:  " << last->message << "\n";
      if (last->fix_check) {
        out << "  fix " << (last->fix_check->verified() ? "verified" : "failed") << " on this machine: "
            << last->fix_check->case_id << " -> " << to_string(last->fix_check->outcome) << "\n";
      }
    }
  }
  return kExitOk;
}

int collect_command(const std::string& out_dir, const std::string& rules) {
  const fs::path out = out_dir;
  const fs::path cases_dir = out / "cases";
  SummaryInput summary;
  std::set<std::string> devices;
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(cases_dir, ec)) {
    if (entry.path().extension() == ".jsonl") files.push_back(entry.path());
  }
  if (ec) throw CliError("cannot read '" + cases_dir.string() + "': " + ec.message());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    for (auto& r : read_records(f.string())) summary.records.push_back(std::move(r));
  }
  const fs::path records_path = out / "records.jsonl";
  const fs::path tmp = out / "records.jsonl.tmp";
  fs::remove(tmp, ec);
  for (const auto& r : summary.records) {
    append_record(tmp.string(), r);
    devices.insert(Case::from_id(r.case_id).device);
  }
  fs::rename(tmp, records_path, ec);
  if (ec) throw CliError("cannot write '" + records_path.string() + "': " + ec.message());

  const Environment env = capture_environment();
  {
    const fs::path env_tmp = out / "environment.json.tmp";
    std::ofstream o(env_tmp, std::ios::trunc);
    o << nlohmann::json({{"id", env.id()}, {"facts", env.facts}}).dump(2) << "\n";
    o.close();
    if (!o) throw CliError("cannot write '" + env_tmp.string() + "'");
    fs::rename(env_tmp, out / "environment.json", ec);
    if (ec) throw CliError("cannot write '" + (out / "environment.json").string() + "': " + ec.message());
  }
  for (const auto& r : summary.records) summary.seconds += r.wall_ms / 1000.0;
  summary.selected = summary.records.size();
  summary.run_now = summary.records.size();
  for (const auto& d : devices) summary.device_text += (summary.device_text.empty() ? "" : ", ") + d;
  if (summary.device_text.empty()) summary.device_text = "no device";
  summary.environment_line = env.id() + ": " + describe_environment(env);
  summary.records_path = records_path.string();
  summary.environment_path = (out / "environment.json").string();
  print_summary(std::cout, summary);
  // Every report format next to the records, so that `ctest -L case` leaves the pages behind.
  for (const std::string& path : write_run_reports(out.string(), rules)) {
    std::cout << "report: " << path << "\n";
  }
  return kExitOk;
}

}  // namespace qlc::harness::cli
