// A worker that segfaults, aborts, hangs or hits a harness bug (fault injection, tests only)
// ends as a record of its own; every other case of the run still runs and is recorded.
#include <set>
#include <string>

#include "cli_support.h"

namespace qlc::e2e {
namespace {

struct FaultCase {
  const char* fault;
  const char* outcome;
  int signal;
  const char* message;  // part of the record's message
  const char* phase;    // "none" where the parent records a dead worker; the fault's phase otherwise
  int jobs;
  const char* isolation;  // process (forked by the fork server) or spawn (from scratch)
};

class FaultIsolationTest : public CliTest, public ::testing::WithParamInterface<FaultCase> {};

// The faulty case: the nf4 one ("cpu/fp4/..." does not contain "cpu/nf4/").
const std::string kFaultyId = full_id("cpu/nf4/param=fp32/compute=fp32/optim=adamw-fp32");

TEST_P(FaultIsolationTest, FaultyCaseIsRecordedAndTheOthersRun) {
  const FaultCase& fc = GetParam();
  const fs::path m = matrix(kFourCases);
  const fs::path out = dir_ / "out";
  // The time limit must exceed a normal case's time on a loaded machine; only `hang` reaches it.
  Result r = run({"run", "--matrix", m.string(), "--out", out.string(), "--steps", "1",
                  "--timeout", "20", "--jobs", std::to_string(fc.jobs), "--isolation",
                  fc.isolation, "--fault", std::string(fc.fault) + "@cpu/nf4/"});
  ASSERT_EQ(r.exit_code, std::string(fc.outcome) == "harness_error" ? 2 : 0) << r.err;

  auto records = read_records(out / "records.jsonl");
  ASSERT_EQ(records.size(), 4u) << r.err;
  std::set<std::string> ids;
  for (const auto& rec : records) {
    const std::string id = rec.at("case");
    ids.insert(id);
    const std::string outcome = rec.at("outcome");
    if (id == kFaultyId) {
      EXPECT_EQ(outcome, fc.outcome);
      EXPECT_EQ(rec.at("phase"), fc.phase);
      EXPECT_NE(rec.at("message").get<std::string>().find(fc.message), std::string::npos)
          << rec.at("message");
      EXPECT_EQ(rec.at("worker").at("signal").get<int>(), fc.signal);
      // The worker's last output is kept; its first line names the case.
      EXPECT_NE(rec.at("worker").at("output").get<std::string>().find(kFaultyId),
                std::string::npos)
          << rec.at("worker").at("output");
      EXPECT_GT(rec.at("timings").at("wall_ms").get<double>(), 0.0);
    } else {
      EXPECT_NE(outcome, "crash") << id;
      EXPECT_NE(outcome, "timeout") << id;
      EXPECT_NE(outcome, "harness_error") << id << ": " << rec.at("message");
      EXPECT_EQ(rec.at("worker").at("signal").get<int>(), 0) << id;
    }
  }
  EXPECT_EQ(ids.size(), 4u);
  EXPECT_TRUE(ids.count(kFaultyId));
  // The summary names the failure and where the records are.
  EXPECT_NE(r.out.find(fc.outcome), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(kFaultyId), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("records.jsonl"), std::string::npos) << r.out;
}

INSTANTIATE_TEST_SUITE_P(
    Faults, FaultIsolationTest,
    // A dead worker's phase is unknown to the parent; the injected harness bug is thrown, caught
    // and recorded by the worker itself in the phase it was injected in (setup).
    ::testing::Values(FaultCase{"segfault", "crash", 11, "SIGSEGV", "none", 2, "process"},
                      FaultCase{"segfault", "crash", 11, "SIGSEGV", "none", 1, "spawn"},
                      FaultCase{"abort", "crash", 6, "SIGABRT", "none", 1, "process"},
                      FaultCase{"hang", "timeout", 9, "time limit", "none", 1, "process"},
                      FaultCase{"hang", "timeout", 9, "time limit", "none", 2, "spawn"},
                      FaultCase{"harness-bug", "harness_error", 0, "injected", "setup", 1, "process"}),
    [](const ::testing::TestParamInfo<FaultCase>& info) {
      std::string name = info.param.fault;
      for (auto& ch : name) ch = ch == '-' ? '_' : ch;
      return name + "_jobs" + std::to_string(info.param.jobs) + "_" + info.param.isolation;
    });

// --isolation=none runs the same cases in the parent (debugging): same records.
TEST_F(CliTest, InProcessRunRecordsEveryCase) {
  const fs::path m = matrix(kFourCases);
  const fs::path out = dir_ / "out";
  Result r = run({"run", "--matrix", m.string(), "--out", out.string(), "--steps", "1",
                  "--isolation", "none"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto records = read_records(out / "records.jsonl");
  ASSERT_EQ(records.size(), 4u);
  for (const auto& rec : records) {
    EXPECT_NE(rec.at("outcome"), "harness_error") << rec.at("message");
    EXPECT_GE(rec.at("timings").at("wall_ms").get<double>(),
              rec.at("timings").at("overhead_ms").get<double>());
  }
}

}  // namespace
}  // namespace qlc::e2e
