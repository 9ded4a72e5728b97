// `qlora-compat run`: select the cases, prepare the output folder (records, environment, lock),
// run the cases not yet recorded (workers, --jobs at a time), append each record as it ends, and
// print the summary.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "commands.h"
#include "qlc/harness/machine_fault.h"
#include "qlc/harness/prediction.h"
#include "qlc/harness/rules.h"
#include "qlc/harness/environment.h"
#include "qlc/harness/worker.h"

namespace qlc::harness::cli {
namespace fs = std::filesystem;

std::string executable_path() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw CliError("cannot find this program's path (/proc/self/exe): " + ec.message());
  return p.string();
}

namespace {

// Creates the output folder and proves it writable, holding a lock against a second run on
// the same folder (released by the kernel however this process ends). Returns the lock's fd.
int prepare_out_dir(const fs::path& out) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec || !fs::is_directory(out)) {
    throw CliError("cannot create output folder '" + out.string() + "': " +
                   (ec ? ec.message() : "not a directory"));
  }
  const std::string lock_path = (out / ".lock").string();
  int fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw CliError("cannot write to output folder '" + out.string() + "': " +
                   std::strerror(errno));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    close(fd);
    throw CliError("output folder '" + out.string() +
                   "' is in use by another qlora-compat run (pass another --out)");
  }
  return fd;
}

void write_atomically(const fs::path& path, const std::string& text) {
  fs::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream o(tmp, std::ios::binary | std::ios::trunc);
    o << text;
    o.flush();
    if (!o) throw CliError("cannot write '" + tmp.string() + "': " + std::strerror(errno));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw CliError("cannot write '" + path.string() + "': " + ec.message());
}

// environment.json holds this run's facts. A resumed run on a changed environment (another
// build, another machine) keeps the earlier file as environment-<id>.json: every record names
// the environment it ran in.
void write_environment(const fs::path& out, const Environment& env, bool resume,
                       const Parallelism& par, const nlohmann::json& matrix) {
  const fs::path path = out / "environment.json";
  if (resume && fs::exists(path)) {
    try {
      std::ifstream in(path);
      nlohmann::json old = nlohmann::json::parse(in);
      std::string old_id = old.value("id", "");
      if (!old_id.empty() && old_id != env.id()) {
        fs::copy_file(path, out / ("environment-" + old_id + ".json"),
                      fs::copy_options::overwrite_existing);
        std::cerr << "qlora-compat: warning: the environment changed since the earlier run ("
                  << old_id << " -> " << env.id() << "); records name the one they ran in\n";
      }
    } catch (const std::exception&) {
      // An unreadable earlier file is replaced below: the records still carry the ids.
    }
  }
  // How this run shares out the machine: not a fact of the machine (so not part of its id);
  // every record says the same for its own timings.
  nlohmann::json j = {{"id", env.id()},
                      {"facts", env.facts},
                      {"run",
                       {{"usable_cores", par.cores},
                        {"jobs", par.jobs},
                        {"threads_per_worker", par.threads},
                        {"matrix", matrix}}}};
  write_atomically(path, j.dump(2) + "\n");
}

// What was run, for the reports (report.json carries environment.json, report.md's header shows
// it): the matrix file and selection as given on the command line, the rules file that made the
// predictions, and the settings every case trained with.
// A float setting as it was written (0.05, not 0.05000000074505806).
double as_written(float v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.7g", static_cast<double>(v));
  return std::strtod(text, nullptr);
}

nlohmann::json matrix_description(const RunOptions& o, size_t cases, const RunSettings& s,
                                  bool predicted) {
  std::string rules = "none";
  if (predicted) {
    rules = o.rules.empty() ? (fs::path(o.selection.matrix).parent_path() / "rules.yaml").string()
                            : o.rules;
  }
  return {{"file", o.selection.matrix},
          {"device", o.selection.device.empty() ? "as the matrix says" : o.selection.device},
          {"filter", o.selection.filter},
          {"shard", o.selection.shard},
          {"cases", cases},
          {"rules", rules},
          {"timeout_s", o.timeout_s},
          {"settings",
           {{"steps", s.steps},
            {"warmup_steps", s.warmup_steps},
            {"lora_rank", s.lora_rank},
            {"lora_alpha", as_written(s.lora_alpha)},
            {"lora_dropout", as_written(s.lora_dropout)},
            {"learning_rate", as_written(s.learning_rate)},
            {"seed", s.seed}}}};
}

struct FaultPlan {
  Fault fault = Fault::kNone;
  std::string where;  // id substring; empty: every case
  Fault for_case(const Case& c) const {
    if (fault == Fault::kNone) return Fault::kNone;
    return where.empty() || c.id().find(where) != std::string::npos ? fault : Fault::kNone;
  }
};

FaultPlan parse_fault(const std::string& text) {
  FaultPlan plan;
  if (text.empty()) return plan;
  size_t at = text.find('@');
  try {
    plan.fault = fault_from_string(text.substr(0, at));
  } catch (const std::exception& e) {
    throw CliError(std::string("--fault: ") + e.what());
  }
  if (at != std::string::npos) plan.where = text.substr(at + 1);
  return plan;
}

}  // namespace

std::optional<Rules> load_run_rules(const std::string& rules, const std::string& matrix) {
  if (rules == "none") return std::nullopt;
  std::string path = rules;
  if (path.empty()) {
    const fs::path beside = fs::path(matrix).parent_path() / "rules.yaml";
    if (!fs::exists(beside)) return std::nullopt;
    path = beside.string();
  } else if (!fs::exists(path)) {
    throw CliError("rules file '" + path + "' not found (--rules none runs without predictions)");
  }
  try {
    return load_rules(path);
  } catch (const RulesError& e) {
    throw CliError(e.what());
  }
}

namespace {

// Thrown from a finished case to stop the run for the machine's fault (disk full).
class RunStopped : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// --serial-timings: each case that trained is timed again alone (one worker with every usable
// core, nothing else running), and its record appended again with those timings; its outcome and
// everything else stay the parallel run's (the last record of a case is the one that counts).
void serial_timings(const std::vector<std::pair<const Case*, Record>>& timed,
                    const Parallelism& par, WorkerOptions options,
                    const std::function<Record(const Case&, const WorkerOptions&)>& run_with,
                    const std::string& env_id, const std::string& records_path) {
  options.threads = par.cores;
  std::cerr << "qlora-compat: timing " << timed.size()
            << " cases one at a time with nothing else running (--serial-timings)\n";
  size_t i = 0;
  for (const auto& [c, parallel] : timed) {
    ++i;
    const Record alone = run_with(*c, options);
    if (alone.outcome != parallel.outcome) {
      std::cerr << "qlora-compat: warning: " << c->id() << " ended " << to_string(alone.outcome)
                << " when timed alone, " << to_string(parallel.outcome)
                << " in the run: its record keeps the run's timings\n";
      continue;
    }
    Record r = parallel;
    r.load_ms = alone.load_ms;
    r.forward = alone.forward;
    r.backward = alone.backward;
    r.optimizer = alone.optimizer;
    r.step_time = alone.step_time;
    r.tokens_per_s = alone.tokens_per_s;
    r.wall_ms = alone.wall_ms;
    r.overhead_ms = alone.overhead_ms;
    r.jobs = 1;
    r.threads = par.cores;
    r.timings_shared = false;
    r.timings_serial = true;
    r.environment_id = env_id;
    append_record(records_path, r);
    char line[96];
    std::snprintf(line, sizeof line, ": step %.2f ms alone, %.2f ms in the run", alone.step_time.median_ms,
                  parallel.step_time.median_ms);
    std::cerr << "[" << i << "/" << timed.size() << "] " << c->id() << line << "\n";
  }
}

std::string first_line_of(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

int run_command(const RunOptions& o) {
  if (o.isolation == "none" && o.jobs > 1) {
    throw CliError("--jobs " + std::to_string(o.jobs) +
                   " needs --isolation=process (in-process cases run one at a time)");
  }
  const FaultPlan fault_plan = parse_fault(o.fault);
  Selected sel = select_cases(o.selection);
  const std::optional<Rules> rules = load_run_rules(o.rules, o.selection.matrix);
  RunSettings settings = sel.matrix.settings;
  if (o.steps > 0) settings.steps = o.steps;

  const fs::path out = o.out;
  const int lock_fd = prepare_out_dir(out);
  const std::string records_path = (out / "records.jsonl").string();
  {
    int fd = open(records_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      throw CliError("cannot write '" + records_path + "': " + std::strerror(errno));
    }
    close(fd);
  }

  // Cases recorded by the earlier run are done; without --resume there must be none.
  std::set<std::string> done;
  if (fs::file_size(records_path) > 0) {
    if (!o.resume) {
      throw CliError("'" + records_path +
                     "' already holds records: pass --resume to continue that run, or --out DIR "
                     "for a new one");
    }
    bool truncated = false;
    try {
      // The last record of a case counts: one that the machine cut short (machine_fault: disk
      // full, killed from outside) never ran to the end, so the case runs again.
      for (const auto& r : read_records(records_path, &truncated)) {
        if (r.outcome == Outcome::kMachineFault) {
          done.erase(r.case_id);
        } else {
          done.insert(r.case_id);
        }
      }
    } catch (const std::exception& e) {
      throw CliError(std::string("cannot resume: ") + e.what());
    }
    // append_record removes the fragment before its first write.
    if (truncated) {
      std::cerr << "qlora-compat: the last line of " << records_path
                << " was cut short by the interruption; its case runs again\n";
    }
  }

  const Environment env = capture_environment();
  const std::string env_id = env.id();
  const Parallelism par = choose_parallelism(o.jobs, o.threads, o.isolation == "none");
  write_environment(out, env, o.resume, par,
                    matrix_description(o, sel.cases.size(), settings, rules.has_value()));

  std::vector<Case> to_run;
  for (const auto& c : sel.cases) {
    if (!done.count(c.id())) to_run.push_back(c);
  }
  const size_t resumed = sel.cases.size() - to_run.size();

  WorkerOptions base;
  base.executable = o.isolation != "none" ? executable_path() : "";
  base.timeout_s = o.timeout_s;
  base.work_dir = (out / "work").string();
  base.keep_work_dir = o.keep_work;
  base.threads = par.threads;  // jobs x threads = the usable cores (see worker_process.cc)
  std::unique_ptr<ForkServer> server;
  if (o.isolation == "process" && !to_run.empty()) {
    std::error_code mk;
    fs::create_directories(base.work_dir, mk);
    server = std::make_unique<ForkServer>(base.executable,
                                          (out / "work" / "fork-server.log").string());
    if (server->ready()) {
      base.fork_server = server.get();
    } else {
      std::cerr << "qlora-compat: warning: no fork server (" << server->error()
                << "); every worker starts from scratch\n";
    }
  }

  std::map<std::string, DeviceFacts> facts;  // per device, read before the workers start
  if (rules) {
    for (const auto& c : to_run) {
      if (!facts.count(c.device)) facts[c.device] = device_facts(c.device);
    }
  }

  Progress progress(to_run.size(), true);
  const auto start = std::chrono::steady_clock::now();
  auto run_with = [&](const Case& c, const WorkerOptions& opts) {
    return o.isolation != "none" ? run_case_in_worker(c, settings, opts)
                                 : run_case_in_process(c, settings, opts);
  };
  // Cases running now, each with "another case ran at some moment while it (or its fix check)
  // ran": its timings then shared the machine.
  std::mutex running_mutex;
  std::map<const Case*, bool> running;
  // Each case id trains at most once per run: most fixes are cases of the matrix, and a case's
  // record is deterministic for its id and settings, so a fix check whose fixed case already ran
  // here takes its record, and a case that an earlier case's fix check ran takes that one. A run in
  // progress elsewhere is waited for (runs never wait, so this cannot deadlock). Never shared: a
  // fault-injected run, or one whose ending was not the case's own (harness error, machine fault).
  std::mutex observed_mutex;
  std::condition_variable observed_changed;
  std::map<std::string, Record> observed;
  std::set<std::string> in_progress;
  // The record of `c` if this run has one (after waiting for a run of it in progress), else
  // nullopt and `c` is marked in progress: the caller runs it, then calls `ran`.
  auto observed_or_claim = [&](const Case& c) -> std::optional<Record> {
    std::unique_lock<std::mutex> lock(observed_mutex);
    observed_changed.wait(lock, [&] { return !in_progress.count(c.id()); });
    auto it = observed.find(c.id());
    if (it != observed.end()) return it->second;
    in_progress.insert(c.id());
    return std::nullopt;
  };
  // Only runs without an injected fault come here (fault tests neither share nor take records).
  auto ran = [&](const Case& c, const Record& r) {
    {
      std::lock_guard<std::mutex> lock(observed_mutex);
      in_progress.erase(c.id());
      if (r.outcome != Outcome::kHarnessError && r.outcome != Outcome::kMachineFault) {
        observed.emplace(c.id(), r);
      }
    }
    observed_changed.notify_all();
  };
  auto run_fix_check = [&](const Case& fixed) {
    if (std::optional<Record> known = observed_or_claim(fixed)) return *known;
    Record r = run_with(fixed, base);  // the fixed case runs without the fault: the fix is tested
    ran(fixed, r);
    return r;
  };
  auto run_one = [&](const Case& c) {
    progress.started(c);
    {
      std::lock_guard<std::mutex> lock(running_mutex);
      for (auto& entry : running) entry.second = true;
      running[&c] = !running.empty();
    }
    WorkerOptions opts = base;
    opts.fault = fault_plan.for_case(c);
    Record r;
    if (opts.fault != Fault::kNone) {
      r = run_with(c, opts);  // a fault test: never shared, never taken from another run
    } else if (std::optional<Record> known = observed_or_claim(c)) {
      r = *known;
    } else {
      r = run_with(c, opts);
      ran(c, r);
    }
    if (rules) predict_and_verify_fix(*rules, facts.at(c.device), c, r, run_fix_check);
    r.jobs = par.jobs;
    r.threads = par.threads;
    std::lock_guard<std::mutex> lock(running_mutex);
    r.timings_shared = running[&c];
    running.erase(&c);
    return r;
  };
  std::vector<std::pair<const Case*, Record>> timed;  // for --serial-timings
  size_t appended = 0;
  auto finished = [&](const Case& c, Record& r) {
    r.environment_id = env_id;
    try {
      append_record(records_path, r);
    } catch (const std::exception& e) {
      const int err = errno;  // append_record's failed call
      const StorageFault fault = storage_fault_of(err);
      if (fault == StorageFault::kNone) throw;
      throw RunStopped(storage_fault_message(fault, "writing " + records_path, err));
    }
    ++appended;
    progress.finished(c, r);
    if (o.serial_timings && !r.losses.empty() && r.step_time.median_ms > 0) timed.emplace_back(&c, r);
    // Every case after it would fail the same way: stop (the running ones end first).
    if (is_disk_full(r)) throw RunStopped(first_line_of(r.message) + " (case " + c.id() + ")");
  };
  try {
    for_each_case(to_run, par.jobs, run_one, finished);
  } catch (const RunStopped& stop) {
    progress.end();
    std::cerr << "qlora-compat: error: " << stop.what() << ": the run stopped after " << appended
              << " of " << to_run.size()
              << " cases; free space, then run again with --resume (it also reruns the cases "
                 "the machine cut short)\n";
    close(lock_fd);
    return kExitMachineFault;
  }
  progress.end();
  if (!timed.empty()) serial_timings(timed, par, base, run_with, env_id, records_path);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::error_code ec;
  if (server) {
    server.reset();  // ends the server
    if (fs::file_size(out / "work" / "fork-server.log", ec) == 0) {
      fs::remove(out / "work" / "fork-server.log", ec);
    }
  }
  fs::remove(out / "work", ec);  // only if empty: --keep-work folders stay

  // The summary covers the selected cases, earlier run included (the last record of each id).
  std::map<std::string, Record> latest;
  for (auto& r : read_records(records_path)) latest[r.case_id] = std::move(r);
  SummaryInput summary;
  std::set<std::string> devices;
  bool harness_error = false;
  bool machine_fault = false;
  for (const auto& c : sel.cases) {
    devices.insert(c.device);
    auto it = latest.find(c.id());
    if (it == latest.end()) continue;
    harness_error |= it->second.outcome == Outcome::kHarnessError;
    machine_fault |= it->second.outcome == Outcome::kMachineFault;
    summary.records.push_back(it->second);
  }
  summary.selected = sel.cases.size();
  summary.run_now = to_run.size();
  summary.resumed = resumed;
  summary.seconds = seconds;
  for (const auto& d : devices) summary.device_text += (summary.device_text.empty() ? "" : ", ") + d;
  if (summary.device_text.empty()) summary.device_text = "no device";
  summary.environment_line = env_id + ": " + describe_environment(env);
  summary.records_path = records_path;
  summary.environment_path = (out / "environment.json").string();
  print_summary(std::cout, summary);
  std::cout.flush();
  close(lock_fd);
  if (harness_error) return kExitHarnessError;
  return machine_fault ? kExitMachineFault : kExitOk;
}

}  // namespace qlc::harness::cli
