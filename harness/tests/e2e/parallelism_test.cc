// The default run uses the machine (jobs x threads per worker = the usable cores), says so in
// environment.json and every record, marks timings taken while other cases ran, and
// --serial-timings times each case again alone, keeping the parallel run's outcome.
#include <sched.h>

#include <map>

#include "cli_support.h"

namespace qlc::e2e {
namespace {

TEST_F(CliTest, DefaultRunFillsTheCoresAndSerialTimingsTimeEachCaseAlone) {
  const fs::path out = dir_ / "out";
  Result r = run({"run", "--matrix", matrix(kFourCases).string(), "--out", out.string(),
                  "--steps", "2", "--serial-timings"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

  const auto env = nlohmann::json::parse(read_text(out / "environment.json"));
  const int cores = env.at("run").at("usable_cores");
  const int jobs = env.at("run").at("jobs");
  const int threads = env.at("run").at("threads_per_worker");
  cpu_set_t set;
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  EXPECT_GE(cores, 1);
  EXPECT_LE(cores, CPU_COUNT(&set));  // a cgroup quota may lower it, nothing raises it
  EXPECT_EQ(jobs * threads, cores);

  // Each case: its parallel record, then its serial one (all four train: fp32 everywhere).
  std::map<std::string, std::vector<nlohmann::json>> by_case;
  for (const auto& rec : read_records(out / "records.jsonl")) by_case[rec.at("case")].push_back(rec);
  ASSERT_EQ(by_case.size(), 4u);
  bool any_shared = false;
  for (const auto& [id, recs] : by_case) {
    ASSERT_EQ(recs.size(), 2u) << id;
    const auto& parallel = recs[0];
    const auto& alone = recs[1];
    EXPECT_EQ(parallel.at("outcome"), "ok") << id;
    EXPECT_EQ(parallel.at("parallel").at("jobs"), jobs);
    EXPECT_EQ(parallel.at("parallel").at("threads"), threads);
    EXPECT_FALSE(parallel.at("timings").at("serial").get<bool>());
    any_shared |= parallel.at("timings").at("shared").get<bool>();
    // Alone: one job with every core, nothing shared; the parallel run's outcome and losses
    // (the serial pass replaces timings only).
    EXPECT_EQ(alone.at("outcome"), parallel.at("outcome"));
    EXPECT_EQ(alone.at("losses"), parallel.at("losses"));
    EXPECT_TRUE(alone.at("timings").at("serial").get<bool>());
    EXPECT_FALSE(alone.at("timings").at("shared").get<bool>());
    EXPECT_EQ(alone.at("parallel").at("jobs"), 1);
    EXPECT_EQ(alone.at("parallel").at("threads"), cores);
    EXPECT_GT(alone.at("timings").at("step").at("median_ms").get<double>(), 0.0);
  }
  // With two or more jobs the first cases start together; with one, nothing overlaps.
  EXPECT_EQ(any_shared, jobs > 1);

  // The summary and the reports count each case once (its last record).
  EXPECT_NE(r.out.find("4 of 4 cases recorded"), std::string::npos) << r.out;
  Result rep = run({"report", "--in", out.string(), "--format", "csv"});
  ASSERT_EQ(rep.exit_code, 0) << rep.err;
  EXPECT_EQ(non_empty_lines(read_text(out / "report.csv")).size(), 5u);  // header + 4 cases
}

}  // namespace
}  // namespace qlc::e2e
