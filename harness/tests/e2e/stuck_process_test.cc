// Processes stopped or killed from outside during a real run: the fork server stopped (SIGSTOP)
// or killed (SIGKILL) while a worker runs, a worker killed (SIGKILL) by someone else. The run must end on time with
// the case recorded as the machine's fault (machine_fault, exit status 3), the other cases run,
// and --resume must run that case again.
#include <dirent.h>

#include "cli_support.h"

namespace qlc::e2e {
namespace {

// The case that hangs (fault injection): the fp4 one, third of kFourCases in run order.
const std::string kHangingId = full_id("cpu/fp4/param=fp32/compute=fp32/optim=adamw-fp32");
// Far above what the three other cases take together, so that a run ending well before it proves
// that nothing waited for it.
constexpr int kTimeoutS = 60;

// Child processes of `parent` (from /proc/PID/stat).
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> children;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return children;
  while (dirent* e = readdir(proc)) {
    const pid_t pid = static_cast<pid_t>(std::atol(e->d_name));
    if (pid <= 0) continue;
    const std::string stat = read_text(fs::path("/proc") / e->d_name / "stat");
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream rest(stat.substr(paren + 1));
    std::string state;
    long ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent) children.push_back(pid);
  }
  closedir(proc);
  return children;
}

// Waits until `ready` holds (polling), at most 60 s.
template <class F>
bool wait_until(F ready) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < give_up) {
    if (ready()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

class StuckProcessTest : public CliTest {
 protected:
  // Starts a run of kFourCases whose fp4 case hangs and returns once its worker is running:
  // `server` is the fork server, `worker` the fp4 case's worker.
  std::unique_ptr<Process> start_run(pid_t* server, pid_t* worker) {
    out_ = dir_ / "out";
    auto run = std::make_unique<Process>(
        std::vector<std::string>{"run", "--matrix", matrix(kFourCases).string(), "--out",
                                 out_.string(), "--steps", "1", "--jobs", "1", "--timeout",
                                 std::to_string(kTimeoutS), "--fault", "hang@cpu/fp4/"},
        dir_, "run");
    // --jobs 1: once the two cases before it are recorded, the server's one child is fp4's.
    EXPECT_TRUE(wait_until([&] { return read_records(out_ / "records.jsonl").size() >= 2; }));
    EXPECT_TRUE(wait_until([&] {
      for (pid_t p : children_of(run->pid())) {
        if (read_text(fs::path("/proc") / std::to_string(p) / "cmdline").find("worker-server") !=
            std::string::npos) {
          *server = p;
          auto workers = children_of(p);
          if (workers.size() == 1) *worker = workers[0];
          return workers.size() == 1;
        }
      }
      return false;
    }));
    return run;
  }
  nlohmann::json record_of(const std::string& id) {
    nlohmann::json found;
    for (const auto& r : read_records(out_ / "records.jsonl")) {
      if (r.at("case") == id) found = r;  // the last one
    }
    return found;
  }
  // Every case but the hanging one trained normally.
  void expect_others_fine() {
    auto records = read_records(out_ / "records.jsonl");
    ASSERT_EQ(records.size(), 4u);
    for (const auto& r : records) {
      if (r.at("case") == kHangingId) continue;
      EXPECT_EQ(r.at("outcome"), "ok") << r.at("case") << ": " << r.at("message");
    }
  }
  fs::path out_;
};

TEST_F(StuckProcessTest, StoppedForkServerIsReplacedAndTheRunEndsOnTime) {
  pid_t server = 0, worker = 0;
  const auto start = std::chrono::steady_clock::now();
  auto run = start_run(&server, &worker);
  ASSERT_GT(server, 0);
  ASSERT_EQ(kill(server, SIGSTOP), 0);
  Result r = run->wait(std::chrono::seconds(kTimeoutS * 3));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Before the fix the run waited for the stopped server past the time limit and 60 s more.
  EXPECT_LT(seconds, kTimeoutS) << r.err;
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
  expect_others_fine();
  const nlohmann::json rec = record_of(kHangingId);
  EXPECT_EQ(rec.at("outcome"), "machine_fault") << rec;
  const std::string message = rec.at("message");
  EXPECT_NE(message.find("fork server"), std::string::npos) << message;
  EXPECT_NE(message.find("stopped from outside"), std::string::npos) << message;
  // The stopped server is gone (killed), not left behind.
  EXPECT_TRUE(wait_until([&] { return kill(server, 0) != 0; }));

  // --resume runs that case again (without the fault: it trains).
  Result again = run_cli({"run", "--matrix", (dir_ / "matrix.yaml").string(), "--out",
                          out_.string(), "--steps", "1", "--resume"},
                         dir_);
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_NE(again.out.find("(1 run now, 3 from the earlier run)"), std::string::npos) << again.out;
  EXPECT_EQ(record_of(kHangingId).at("outcome"), "ok");
}

TEST_F(StuckProcessTest, ForkServerKilledFromOutsideIsAMachineFault) {
  pid_t server = 0, worker = 0;
  auto run = start_run(&server, &worker);
  ASSERT_GT(server, 0);
  ASSERT_EQ(kill(server, SIGKILL), 0);
  Result r = run->wait(std::chrono::seconds(kTimeoutS * 3));
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;  // not 2: no harness_error
  expect_others_fine();  // the last case ran in a fresh server
  const nlohmann::json rec = record_of(kHangingId);
  EXPECT_EQ(rec.at("outcome"), "machine_fault") << rec;
  EXPECT_NE(rec.at("message").get<std::string>().find(
                "fork server was killed by SIGKILL from outside"),
            std::string::npos)
      << rec.at("message");
}

TEST_F(StuckProcessTest, WorkerKilledFromOutsideIsAMachineFault) {
  pid_t server = 0, worker = 0;
  auto run = start_run(&server, &worker);
  ASSERT_GT(worker, 0);
  ASSERT_EQ(kill(worker, SIGKILL), 0);
  Result r = run->wait(std::chrono::seconds(kTimeoutS * 3));
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
  expect_others_fine();
  const nlohmann::json rec = record_of(kHangingId);
  // A tiny case holds far less than half the machine's memory: not the OOM killer's choice.
  EXPECT_EQ(rec.at("outcome"), "machine_fault") << rec;
  EXPECT_NE(rec.at("message").get<std::string>().find(
                "killed by SIGKILL (the OOM killer or another process"),
            std::string::npos)
      << rec.at("message");
  EXPECT_EQ(rec.at("worker").at("signal"), SIGKILL);
}

}  // namespace
}  // namespace qlc::e2e
