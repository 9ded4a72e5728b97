// Worker processes, the run's side: start a worker per case (forked by the fork server, or
// spawned from scratch: never a fork of this process, which may have initialised CUDA or
// OpenMP), enforce the time limit, and turn whatever happened to the worker into a Record. The
// worker's side is in worker_process.cc, the fork server in fork_server.cc.
#include "qlc/harness/worker.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "isolation/worker_launch.h"
#include "qlc/harness/machine_fault.h"

extern char** environ;

namespace qlc::harness {
namespace fs = std::filesystem;
namespace {

constexpr int kTailLines = 20;             // lines of worker output kept in a record
constexpr size_t kTailLineChars = 400;     // one runaway line must not bloat the record
constexpr std::streamoff kTailBytes = 16384;

using detail::Clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// A folder name for one run of a case ("cpu/nf4-dq/param=bf16/..." has '/', '=' and ':'); the
// hash keeps two ids that map to the same readable part apart, and a number per run in this
// process keeps two runs of one id apart: with --jobs > 1 a case's fix check (another case's id)
// may run while that case itself runs, and each removes its folder when it ends.
std::string case_dir_name(const std::string& id) {
  static std::atomic<unsigned long> runs{0};
  std::string name;
  for (char ch : id) {
    bool plain = std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '.';
    name += plain ? ch : '_';
  }
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char ch : id) h = (h ^ ch) * 1099511628211ull;
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", static_cast<unsigned>(h & 0xffffffffu));
  return name + "-" + hex + "." + std::to_string(++runs);
}

// The last kTailLines non-empty lines of a log file.
std::string tail_of_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  std::streamoff start = std::max<std::streamoff>(0, size - kTailBytes);
  in.seekg(start);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> lines;
  std::istringstream ss(text);
  std::string line;
  bool first = start > 0;  // the first line read from mid-file is partial: drop it
  while (std::getline(ss, line)) {
    if (first) {
      first = false;
      continue;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (line.size() > kTailLineChars) line = line.substr(0, kTailLineChars) + "...";
    lines.push_back(line);
  }
  size_t from = lines.size() > kTailLines ? lines.size() - kTailLines : 0;
  std::string out;
  for (size_t i = from; i < lines.size(); ++i) out += lines[i] + "\n";
  return out;
}

std::string last_line(const std::string& text) {
  std::string t = text;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  size_t nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

Record parent_record(const Case& c, const RunSettings& settings, Outcome outcome,
                     const std::string& message) {
  Record r;
  r.case_id = c.id();
  r.outcome = outcome;
  r.phase = Phase::kNone;  // the parent cannot know where the worker was
  r.message = message;
  r.model = to_string(c.model);
  r.lora_rank = settings.lora_rank;
  return r;
}

// How long a worker killed (SIGKILL) at its time limit may take to disappear.
constexpr auto kKillGrace = std::chrono::seconds(10);

class WorkerUnkillable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The record of a case whose scratch folder could not be made: the machine's fault when the
// disk is full or the folder unwritable, else ours.
Record work_folder_error(const Case& c, const RunSettings& settings, const fs::path& dir,
                         const std::error_code& ec) {
  const StorageFault fault = storage_fault_of(ec.value());
  if (fault != StorageFault::kNone) {
    return parent_record(c, settings, Outcome::kMachineFault,
                         storage_fault_message(fault, "creating the work folder " + dir.string(),
                                               ec.value()));
  }
  return parent_record(c, settings, Outcome::kHarnessError,
                       "cannot create work folder " + dir.string() + ": " + ec.message());
}

// Waits for `pid` to end or for `deadline`; kills it (SIGKILL) past the deadline. Returns true
// when it was killed for the time limit. A pidfd (Linux >= 5.3) wakes us the moment the worker
// ends; without one we poll with a short sleep.
bool wait_for_worker(pid_t pid, Clock::time_point deadline, int* status, rusage* usage) {
  // `deadline` is moved to the end of the kill grace once the worker is killed.
  int pidfd = -1;
#ifdef SYS_pidfd_open
  pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#endif
  bool timed_out = false;
  auto sleep = std::chrono::milliseconds(1);
  while (true) {
    pid_t r = wait4(pid, status, WNOHANG, usage);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      if (pidfd >= 0) close(pidfd);
      throw std::runtime_error(std::string("waiting for worker: ") + std::strerror(errno));
    }
    auto now = Clock::now();
    if (now >= deadline && timed_out) {
      // Still there after SIGKILL: stuck in the kernel (uninterruptible sleep in a driver or a
      // file system). Not waited for any longer; the machine's fault, not the case's.
      if (pidfd >= 0) close(pidfd);
      throw WorkerUnkillable("the worker did not end within " +
                             std::to_string(std::chrono::seconds(kKillGrace).count()) +
                             " s of SIGKILL (stuck in the kernel: a driver or a file system)");
    }
    if (now >= deadline) {
      kill(pid, SIGKILL);
      timed_out = true;
      deadline = now + kKillGrace;  // SIGKILL ends a process within milliseconds
      continue;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0};
      poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
    } else {
      std::this_thread::sleep_for(std::min(sleep, std::chrono::milliseconds(left)));
      sleep = std::min(sleep * 2, std::chrono::milliseconds(20));
    }
  }
  if (pidfd >= 0) close(pidfd);
  return timed_out;
}

// The memory this process may use: the smaller of the machine's memory and its cgroup's limit
// (v2 memory.max, v1 memory.limit_in_bytes); 0 when unknown.
int64_t memory_limit_bytes() {
  int64_t limit = 0;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string key; meminfo >> key;) {
    if (key == "MemTotal:") {
      int64_t kib = 0;
      meminfo >> kib;
      limit = kib * 1024;
      break;
    }
    meminfo.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  std::ifstream cgroups("/proc/self/cgroup");
  for (std::string line; std::getline(cgroups, line);) {
    // "0::/path" (v2) or "N:memory:/path" (v1)
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    const std::string file = controllers.empty() ? "/sys/fs/cgroup" + path + "/memory.max"
                             : controllers == "memory"
                                 ? "/sys/fs/cgroup/memory" + path + "/memory.limit_in_bytes"
                                 : "";
    if (file.empty()) continue;
    std::ifstream in(file);
    int64_t value = 0;
    if (in >> value && value > 0 && (limit == 0 || value < limit)) limit = value;  // "max": no limit
  }
  return limit;
}

// A worker killed by SIGKILL that qlora-compat did not send: the kernel's OOM killer or another
// process (a user, a batch system). There is no reading the kernel log here, so the worker's own
// peak resident set against the memory limit decides: a worker that held at least half of it is
// what the OOM killer picks (it kills the largest), so the case ran out of memory (oom); a smaller
// one was killed for someone else's memory, or by another process (machine_fault: --resume runs
// it again).
Outcome killed_from_outside(int64_t peak_bytes, std::string* message) {
  const int64_t limit = memory_limit_bytes();
  const bool large = limit > 0 && peak_bytes >= limit / 2;
  char evidence[160];
  if (limit > 0) {
    std::snprintf(evidence, sizeof evidence,
                  "its peak resident set was %.0f MiB of the %.0f MiB this machine allows",
                  peak_bytes / 1048576.0, limit / 1048576.0);
  } else {
    std::snprintf(evidence, sizeof evidence, "its peak resident set was %.0f MiB",
                  peak_bytes / 1048576.0);
  }
  *message = std::string("worker killed by SIGKILL (the OOM killer or another process, not "
                         "qlora-compat): ") + evidence +
             (large ? ", so most likely the OOM killer"
                    : ", too little to make it the OOM killer's choice: a machine fault");
  return large ? Outcome::kOom : Outcome::kMachineFault;
}

// The record of a worker that has ended: its own, when it wrote one (`from_worker`), else one
// made here from how it ended. Exit facts and, when it went wrong, its last output go in either.
Record record_from_exit(const Case& c, const RunSettings& settings, double timeout_s,
                        const std::string& record_path, const std::string& log_path,
                        const detail::WorkerExit& exit, bool* from_worker) {
  const std::string output = tail_of_file(log_path);
  const int64_t max_rss = static_cast<int64_t>(exit.usage.ru_maxrss) * 1024;  // Linux: KiB
  const bool known = exit.lost.empty();
  const bool signaled = known && WIFSIGNALED(exit.status);
  const int sig = signaled ? WTERMSIG(exit.status) : 0;
  const int code = known && WIFEXITED(exit.status) ? WEXITSTATUS(exit.status) : 0;

  Record r;
  *from_worker = false;
  std::string read_error;
  // A record written before a kill still stands: the case itself had ended.
  std::error_code ec;
  if (fs::exists(record_path, ec)) {
    try {
      std::ifstream in(record_path);
      r = Record::from_json(nlohmann::json::parse(in));
      *from_worker = true;
    } catch (const std::exception& e) {
      read_error = e.what();
    }
  }

  if (*from_worker) {
    // The case ended and said how. A worker that then died on its way out keeps the case's
    // outcome; the signal and output stay in the record.
  } else if (exit.timed_out) {
    char limit[32];
    std::snprintf(limit, sizeof limit, "%g", timeout_s);
    r = parent_record(c, settings, Outcome::kTimeout,
                      std::string("worker exceeded the time limit of ") + limit +
                          " s and was killed (SIGKILL)");
    r.peak_memory_bytes = max_rss;
  } else if (!known) {
    r = parent_record(c, settings,
                      exit.lost_to_machine ? Outcome::kMachineFault : Outcome::kHarnessError,
                      exit.lost);
  } else if (signaled && sig == SIGXFSZ) {
    r = parent_record(c, settings, Outcome::kMachineFault,
                      storage_fault_message(StorageFault::kDiskFull,
                                            "the worker was killed by SIGXFSZ", EFBIG));
  } else if (signaled && sig == SIGKILL) {
    r = parent_record(c, settings, Outcome::kCrash, "");
    r.outcome = killed_from_outside(max_rss, &r.message);
    if (!output.empty()) r.message += "\n" + last_line(output);
    r.peak_memory_bytes = max_rss;
  } else if (signaled) {
    std::string message = "worker killed by " + signal_name(sig);
    if (!output.empty()) message += "\n" + last_line(output);
    r = parent_record(c, settings, Outcome::kCrash, message);
    r.peak_memory_bytes = max_rss;
  } else if (!read_error.empty()) {
    r = parent_record(c, settings, Outcome::kHarnessError,
                      "worker record " + record_path + " is unreadable: " + read_error);
  } else if (code == kWorkerExitDiskFull || code == kWorkerExitUnwritable) {
    r = parent_record(c, settings, Outcome::kMachineFault,
                      storage_fault_message(code == kWorkerExitDiskFull ? StorageFault::kDiskFull
                                                                        : StorageFault::kUnwritable,
                                            "the worker could not write its record or log",
                                            code == kWorkerExitDiskFull ? ENOSPC : EACCES) +
                          (output.empty() ? "" : "\n" + last_line(output)));
  } else if (code == kWorkerExitUsage || code == kWorkerExitRecordFailed || code == 127 ||
             code == 0) {
    // Our own failures: a request the worker rejected, a record it could not write, an exec
    // that failed after the spawn, or a "success" without a record.
    r = parent_record(c, settings, Outcome::kHarnessError,
                      "worker exited with code " + std::to_string(code) + " without a record" +
                          (output.empty() ? "" : ": " + last_line(output)));
  } else {
    // Something inside the case called exit() (a library giving up): the case ended the
    // process, as a crash does.
    r = parent_record(c, settings, Outcome::kCrash,
                      "worker exited with code " + std::to_string(code) + " without a record" +
                          (output.empty() ? "" : "\n" + last_line(output)));
    r.peak_memory_bytes = max_rss;
  }
  if (r.case_id.empty()) r.case_id = c.id();
  r.exit_code = code;
  r.signal = exit.timed_out ? SIGKILL : sig;
  if (exit.timed_out || !*from_worker || signaled || code != 0 ||
      r.outcome == Outcome::kHarnessError) {
    r.worker_output = output;
  }
  return r;
}

// The spelling fault_from_string reads.
std::string fault_name(Fault f) {
  switch (f) {
    case Fault::kNone: return "none";
    case Fault::kSegfault: return "segfault";
    case Fault::kAbort: return "abort";
    case Fault::kHang: return "hang";
    case Fault::kThrowHarnessBug: return "harness-bug";
  }
  return "none";
}

}  // namespace

std::string signal_name(int sig) {
  switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGTRAP: return "SIGTRAP";
    case SIGSYS: return "SIGSYS";
    case SIGPIPE: return "SIGPIPE";
    case SIGXCPU: return "SIGXCPU";
    case SIGXFSZ: return "SIGXFSZ";
    default: return "signal " + std::to_string(sig);
  }
}

nlohmann::json settings_to_json(const RunSettings& s) {
  return {{"steps", s.steps},
          {"warmup_steps", s.warmup_steps},
          {"lora_rank", s.lora_rank},
          {"lora_alpha", s.lora_alpha},
          {"lora_dropout", s.lora_dropout},
          {"learning_rate", s.learning_rate},
          {"seed", s.seed}};
}

RunSettings settings_from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("run settings: expected a JSON object");
  RunSettings s;
  try {
    // Every key is optional (defaults from RunSettings); unknown keys are an error, so a typo
    // in a hand-written --settings-json does not pass silently.
    for (const auto& [key, value] : j.items()) {
      if (key == "steps") s.steps = value.get<int>();
      else if (key == "warmup_steps") s.warmup_steps = value.get<int>();
      else if (key == "lora_rank") s.lora_rank = value.get<int>();
      else if (key == "lora_alpha") s.lora_alpha = value.get<float>();
      else if (key == "lora_dropout") s.lora_dropout = value.get<float>();
      else if (key == "learning_rate") s.learning_rate = value.get<float>();
      else if (key == "seed") s.seed = value.get<uint64_t>();
      else throw std::invalid_argument("run settings: unknown key '" + key + "'");
    }
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(std::string("run settings: ") + e.what());
  }
  return s;
}

double training_ms(const Record& r) {
  // The runner's own wall time minus its own overhead is the time spent in training steps
  // (warm-up included: it is training, not set-up).
  if (r.wall_ms > 0.0 && r.overhead_ms >= 0.0 && r.overhead_ms <= r.wall_ms) {
    return r.wall_ms - r.overhead_ms;
  }
  // Otherwise estimate from the timed steps' median.
  return r.step_time.median_ms * static_cast<double>(r.losses.size());
}

namespace detail {

bool spawn_worker(const std::string& executable, const WorkerRequest& request,
                  const std::string& log_path, Clock::time_point deadline, WorkerExit* exit,
                  std::string* error) {
  std::vector<std::string> args = {executable, "worker",
                                   "--case", request.case_id,
                                   "--settings-json", request.settings.dump(),
                                   "--record", request.record_path,
                                   "--work-dir", request.work_dir,
                                   "--parent-pid", std::to_string(request.parent_pid),
                                   "--threads", std::to_string(request.threads),
                                   "--fault", request.fault};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_adddup2(&actions, 2, 1);
  pid_t pid = 0;
  const int err = posix_spawn(&pid, executable.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) {
    *error = "cannot start worker '" + executable + "': " + std::strerror(err);
    const StorageFault fault = storage_fault_of(err);  // its log could not be created
    if (fault != StorageFault::kNone) {
      exit->lost = storage_fault_message(fault, "starting the worker (its log " + log_path + ")", err);
      exit->lost_to_machine = true;
      return true;
    }
    return false;
  }
  try {
    exit->timed_out = wait_for_worker(pid, deadline, &exit->status, &exit->usage);
  } catch (const WorkerUnkillable& e) {
    exit->lost = e.what();
    exit->lost_to_machine = true;
  } catch (const std::exception& e) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, WNOHANG);  // never block: every wait has a deadline
    exit->lost = e.what();
  }
  return true;
}

}  // namespace detail

Record run_case_in_worker(const Case& c, const RunSettings& settings,
                          const WorkerOptions& options) {
  const std::string id = c.id();
  const fs::path dir = fs::path(options.work_dir) / case_dir_name(id);
  const std::string log_path = (dir / "worker.log").string();
  std::error_code ec;
  fs::remove_all(dir, ec);  // leftovers of an interrupted run: never read a stale record
  fs::create_directories(dir, ec);
  if (ec) return work_folder_error(c, settings, dir, ec);
  WorkerRequest request;
  request.case_id = id;
  request.settings = settings_to_json(settings);
  request.record_path = (dir / "record.json").string();
  request.work_dir = dir.string();
  request.fault = fault_name(options.fault);
  request.threads = options.threads;
  request.parent_pid = getpid();

  // Clamped so that a huge --timeout cannot overflow the clock's arithmetic (about 3 years).
  const double limit_s = std::min(std::max(options.timeout_s, 0.0), 1e8);
  const auto start = Clock::now();
  const auto deadline =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(limit_s));
  detail::WorkerExit exit;
  std::string error;
  bool started = false;
  if (options.fork_server != nullptr) {
    started = detail::fork_worker(*options.fork_server->impl_, request, log_path, deadline, &exit,
                                  &error);
  }
  if (!started) {
    // No fork server, or it could not fork: start this worker from scratch.
    started = detail::spawn_worker(options.executable, request, log_path, deadline, &exit, &error);
  }
  if (!started) return parent_record(c, settings, Outcome::kHarnessError, error);
  const double wall_ms = ms_since(start);
  bool from_worker = false;
  Record r = record_from_exit(c, settings, options.timeout_s, request.record_path, log_path, exit,
                              &from_worker);
  // Before wall_ms is replaced: the worker's own timings say how long its steps took.
  const double train_ms = from_worker ? training_ms(r) : 0.0;
  r.wall_ms = wall_ms;
  r.overhead_ms = std::max(0.0, wall_ms - train_ms);
  if (!options.keep_work_dir) fs::remove_all(dir, ec);
  return r;
}

Record run_case_in_process(const Case& c, const RunSettings& settings,
                           const WorkerOptions& options) {
  const fs::path dir = fs::path(options.work_dir) / case_dir_name(c.id());
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir, ec);
  if (ec) return work_folder_error(c, settings, dir, ec);
  const auto start = Clock::now();
  Record r = detail::run_case_guarded(c, settings, RunContext{dir.string(), options.fault});
  const double wall_ms = ms_since(start);
  const double train_ms = training_ms(r);  // before wall_ms is replaced
  r.wall_ms = wall_ms;
  r.overhead_ms = std::max(0.0, wall_ms - train_ms);
  if (!options.keep_work_dir) fs::remove_all(dir, ec);
  return r;
}

void for_each_case(const std::vector<Case>& cases, int jobs,
                   const std::function<Record(const Case&)>& run_one,
                   const std::function<void(const Case&, Record&)>& finished) {
  std::mutex mutex;  // guards `next`, `error` and serializes `finished`
  size_t next = 0;
  std::exception_ptr error;
  auto work = [&] {
    while (true) {
      const Case* c = nullptr;
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (error || next >= cases.size()) return;
        c = &cases[next++];
      }
      Record r;
      try {
        r = run_one(*c);
      } catch (const std::exception& e) {
        r = Record{};
        r.case_id = c->id();
        r.outcome = Outcome::kHarnessError;
        r.message = e.what();
      }
      std::lock_guard<std::mutex> lock(mutex);
      if (error) return;
      try {
        finished(*c, r);
      } catch (...) {
        error = std::current_exception();
        return;
      }
    }
  };
  const int n = std::max(1, std::min<int>(jobs, static_cast<int>(cases.size())));
  if (n == 1) {
    work();
  } else {
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) threads.emplace_back(work);
    for (auto& t : threads) t.join();
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace qlc::harness
