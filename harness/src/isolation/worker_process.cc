// The worker side: process setup, the case, the record (written atomically), the exit.
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <stdexcept>

#include <ATen/Parallel.h>

#include "isolation/worker_launch.h"
#include "qlc/harness/machine_fault.h"

namespace qlc::harness {
namespace {

void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot create " + tmp + ": " + std::strerror(errno));
    out << text;
    out.flush();
    if (!out) {
      const int err = errno;  // the caller reads it: a full disk is not our bug
      out.close();
      errno = err;
      throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(err));
    }
  }
  // The parent reads the record only after the worker ended, but a worker killed mid-write
  // (time limit) must leave either a whole record or none.
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error("cannot rename " + tmp + " to " + path + ": " +
                             std::strerror(errno));
  }
}

void setup_worker_process(long parent_pid, int threads) {
#ifdef PR_SET_PDEATHSIG
  // A worker must not outlive a killed run (it would go on using a core, or the GPU, for a
  // record nobody reads). The signal fires when the thread that started the worker ends; the
  // run's threads end only after their workers have.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (parent_pid > 0 && getppid() != static_cast<pid_t>(parent_pid)) std::_Exit(kWorkerExitUsage);
#else
  (void)parent_pid;
#endif
  // With --jobs N, N workers share the machine's cores: LibTorch's default of one intra-op
  // thread per core in every worker would oversubscribe them N times over (context switches,
  // noisy timings). The run passes cores / jobs (1 when --jobs equals the number of cores).
  if (threads > 0) at::set_num_threads(threads);
}

}  // namespace

namespace detail {

Record run_case_guarded(const Case& c, const RunSettings& settings, const RunContext& ctx) {
  Record r;
  try {
    r = run_case(c, settings, ctx);
  } catch (const std::exception& e) {
    // run_case classifies the case's own failures; anything escaping it is our bug.
    r = Record{};
    r.outcome = Outcome::kHarnessError;
    r.message = std::string("uncaught exception in run_case: ") + e.what();
  } catch (...) {
    r = Record{};
    r.outcome = Outcome::kHarnessError;
    r.message = "uncaught non-standard exception in run_case";
  }
  if (r.case_id.empty()) r.case_id = c.id();
  if (r.model.empty()) r.model = to_string(c.model);
  if (r.lora_rank == 0) r.lora_rank = settings.lora_rank;
  return r;
}

}  // namespace detail

int worker_main(const Case& c, const RunSettings& settings, const RunContext& ctx,
                const std::string& record_path) {
  const Record r = detail::run_case_guarded(c, settings, ctx);
  try {
    // Raw error text may hold any bytes; JSON needs UTF-8 (U+FFFD in their place).
    write_file_atomically(record_path,
                          r.to_json().dump(-1, ' ', false,
                                           nlohmann::json::error_handler_t::replace) +
                              "\n");
  } catch (const std::exception& e) {
    const int err = errno;
    std::fprintf(stderr, "qlora-compat worker: %s\n", e.what());
    return worker_exit_for_write_error(err, kWorkerExitRecordFailed);
  }
  return 0;
}

int worker_exit_for_write_error(int errno_value, int otherwise) {
  switch (storage_fault_of(errno_value)) {
    case StorageFault::kDiskFull: return kWorkerExitDiskFull;
    case StorageFault::kUnwritable: return kWorkerExitUnwritable;
    case StorageFault::kNone: break;
  }
  return otherwise;
}

void run_worker_request(const WorkerRequest& request) {
  setup_worker_process(request.parent_pid, request.threads);
  // First line of the worker's log: a crash record's output then always says what ran.
  std::fprintf(stderr, "qlora-compat worker %ld: %s\n", static_cast<long>(getpid()),
               request.case_id.c_str());
  int rc = kWorkerExitUsage;
  try {
    const Case c = Case::from_id(request.case_id);
    const RunSettings settings = settings_from_json(request.settings);
    const RunContext ctx{request.work_dir, fault_from_string(request.fault)};
    rc = worker_main(c, settings, ctx, request.record_path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qlora-compat worker: bad request: %s\n", e.what());
    rc = kWorkerExitUsage;
  }
  std::fflush(nullptr);
  std::_Exit(rc);
}

}  // namespace qlc::harness
