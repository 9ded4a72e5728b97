// `qlora-compat worker` and `qlora-compat worker-server`: the child side of process isolation
// (started by `run`, never by hand).
#include <exception>
#include <string>

#include "commands.h"
#include "qlc/harness/worker.h"

namespace qlc::harness::cli {

void worker_command(const WorkerArgs& args) {
  WorkerRequest request;
  request.case_id = args.case_id;
  request.record_path = args.record;
  request.work_dir = args.work_dir;
  request.fault = args.fault;
  request.threads = args.threads;
  request.parent_pid = args.parent_pid;
  try {
    request.settings = nlohmann::json::parse(args.settings_json);
  } catch (const std::exception&) {
    request.settings = nullptr;  // rejected by the worker, with the reason in its output
  }
  run_worker_request(request);  // does not return
}

int worker_server_command(long parent_pid) { return fork_server_main(parent_pid); }

}  // namespace qlc::harness::cli
