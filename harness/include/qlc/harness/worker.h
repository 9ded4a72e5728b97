// Process isolation: each case runs in a freshly spawned worker (`qlora-compat worker ...`,
// posix_spawn, never fork after CUDA initialisation). A segfault, abort, sticky CUDA error, OOM
// or hang ends only that worker; the parent records crash/timeout with the signal and the
// worker's last output, and the next case gets a fresh worker.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qlc/harness/case.h"
#include "qlc/harness/record.h"
#include "qlc/harness/runner.h"

namespace qlc::harness {

class ForkServer;

struct WorkerOptions {
  std::string executable;      // path of the qlora-compat binary to spawn
  double timeout_s = 600.0;    // wall-clock limit per case; killed (SIGKILL) past it
  std::string work_dir;        // scratch space; one subfolder per case
  Fault fault = Fault::kNone;  // passed through to the worker (tests only)
  int threads = 0;             // LibTorch intra-op threads in the worker; 0: LibTorch's default
  bool keep_work_dir = false;  // keep the case's scratch folder (checkpoint, worker.log)
  // When set and ready, the worker is forked by this server instead of spawned from scratch
  // (same isolation, without LibTorch's start-up cost per case).
  ForkServer* fork_server = nullptr;
};

Record run_case_in_worker(const Case& c, const RunSettings& settings, const WorkerOptions& options);

// --isolation=none (debugging): the same case in this process, with the same scratch folder,
// record fields and exception handling; no time limit, and a crash ends the whole run.
Record run_case_in_process(const Case& c, const RunSettings& settings,
                           const WorkerOptions& options);

// The worker side: runs the case and writes its record JSON atomically to `record_path`.
// Returns the process exit code (0 when the record was written, whatever the outcome).
int worker_main(const Case& c, const RunSettings& settings, const RunContext& ctx,
                const std::string& record_path);

// Exit codes of a worker that could not do its job (the parent records kHarnessError for them;
// any other non-zero exit without a record is the case's own doing and becomes kCrash).
inline constexpr int kWorkerExitRecordFailed = 3;  // the record could not be written
inline constexpr int kWorkerExitUsage = 4;         // bad worker arguments
// The machine's faults (machine_fault, see machine_fault.h): the record or the worker's log
// could not be written because the disk is full / the folder is not writable.
inline constexpr int kWorkerExitDiskFull = 5;
inline constexpr int kWorkerExitUnwritable = 6;
// The exit code for a write that failed with `errno_value`: one of the two above, or `otherwise`.
int worker_exit_for_write_error(int errno_value, int otherwise);

// What one worker is asked to do: the arguments of `qlora-compat worker`, or one request to the
// fork server.
struct WorkerRequest {
  std::string case_id;
  nlohmann::json settings;  // settings_to_json
  std::string record_path;
  std::string work_dir;
  std::string fault = "none";
  int threads = 0;       // LibTorch intra-op threads; 0: LibTorch's default
  long parent_pid = 0;   // the worker dies with this process (0: no check)
};

// The worker process's whole life: process setup (dies with its parent, thread count), the case,
// the record, then _Exit with worker_main's code (or kWorkerExitUsage for a bad request): no
// static destructors or library teardown, which are slow and could only blur the result.
[[noreturn]] void run_worker_request(const WorkerRequest& request);

// The fork server: a process that has loaded LibTorch (its static initialisation is most of a
// worker's start-up) and forks one fresh worker per case. It never runs an operator, starts a
// thread or touches CUDA, so a forked worker starts as clean as a spawned one (and the rule "no
// fork after CUDA initialisation" holds). Thread-safe; ends its workers and itself when
// destroyed or when the run dies.
class ForkServer {
 public:
  // Spawns `<executable> worker-server`, its own output going to `log_path`, and waits until it
  // is ready (or failed: see ready() and error()).
  ForkServer(const std::string& executable, const std::string& log_path);
  ~ForkServer();
  ForkServer(const ForkServer&) = delete;
  ForkServer& operator=(const ForkServer&) = delete;
  bool ready() const;
  std::string error() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  friend Record run_case_in_worker(const Case&, const RunSettings&, const WorkerOptions&);
};

// The server side (`qlora-compat worker-server`): reads requests on stdin, forks, reports on
// stdout; ends, killing its workers, when stdin closes or `parent_pid` dies.
int fork_server_main(long parent_pid);

// RunSettings as passed to a worker (--settings-json). from_json throws std::invalid_argument.
nlohmann::json settings_to_json(const RunSettings& s);
RunSettings settings_from_json(const nlohmann::json& j);

// "SIGSEGV", "SIGABRT", ... ("signal N" for others).
std::string signal_name(int sig);

// The case's own training time in a record (the sum of its steps' times); wall_ms minus this is
// the overhead (spawn, build, checkpoint, load).
double training_ms(const Record& r);

// Runs `run_one` for each case, at most `jobs` at a time, and hands each record to `finished`
// one call at a time (in completion order). If `finished` throws, no new case starts and the
// exception is rethrown once the running ones have ended.
void for_each_case(const std::vector<Case>& cases, int jobs,
                   const std::function<Record(const Case&)>& run_one,
                   const std::function<void(const Case&, Record&)>& finished);

}  // namespace qlc::harness
