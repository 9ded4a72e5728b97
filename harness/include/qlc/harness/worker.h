// Process isolation: each case runs in a freshly spawned worker (`qlora-compat worker ...`,
// posix_spawn, never fork after CUDA initialisation). A segfault, abort, sticky CUDA error, OOM
// or hang ends only that worker; the parent records crash/timeout with the signal and the
// worker's last output, and the next case gets a fresh worker.
#pragma once

#include <string>

#include "qlc/harness/case.h"
#include "qlc/harness/record.h"
#include "qlc/harness/runner.h"

namespace qlc::harness {

struct WorkerOptions {
  std::string executable;      // path of the qlora-compat binary to spawn
  double timeout_s = 600.0;    // wall-clock limit per case; killed (SIGKILL) past it
  std::string work_dir;        // scratch space; one subfolder per case
  Fault fault = Fault::kNone;  // passed through to the worker (tests only)
};

Record run_case_in_worker(const Case& c, const RunSettings& settings, const WorkerOptions& options);

// The worker side: runs the case and writes its record JSON atomically to `record_path`.
// Returns the process exit code (0 when the record was written, whatever the outcome).
int worker_main(const Case& c, const RunSettings& settings, const RunContext& ctx,
                const std::string& record_path);

}  // namespace qlc::harness
