// Private to the worker files: the two ways a worker starts (spawned from scratch, or forked by
// the fork server) and what the parent learns when it ends.
#pragma once

#include <sys/resource.h>

#include <chrono>
#include <string>

#include "qlc/harness/worker.h"

namespace qlc::harness::detail {

using Clock = std::chrono::steady_clock;

struct WorkerExit {
  int status = 0;          // as waitpid reports it
  rusage usage{};          // of the worker alone (ru_maxrss: its peak resident set, KiB)
  bool timed_out = false;  // killed (SIGKILL) at the deadline
  std::string lost;        // non-empty: how the worker ended is unknown, and why
  bool lost_to_machine = false;  // ... because of the machine (e.g. fork server stopped from outside)
};

// Both start the worker with stdin from /dev/null and stdout/stderr into `log_path`, wait for it
// until `deadline` (then SIGKILL) and fill `exit`. They return false, with `error`, when the
// worker could not be started at all.
bool spawn_worker(const std::string& executable, const WorkerRequest& request,
                  const std::string& log_path, Clock::time_point deadline, WorkerExit* exit,
                  std::string* error);
bool fork_worker(ForkServer::Impl& server, const WorkerRequest& request,
                 const std::string& log_path, Clock::time_point deadline, WorkerExit* exit,
                 std::string* error);

// run_case with every exception turned into a kHarnessError record (worker and --isolation=none).
Record run_case_guarded(const Case& c, const RunSettings& settings, const RunContext& ctx);

}  // namespace qlc::harness::detail
