// `qlora-compat run` on the shipped cases/smoke.yaml, end to end: every case recorded, no
// harness_error, records and environment consistent, the summary printed.
#include <set>
#include <string>

#include "cli_support.h"

namespace qlc::e2e {
namespace {

TEST_F(CliTest, SmokeMatrixRunsEndToEnd) {
  const fs::path smoke = source_dir() / "cases" / "smoke.yaml";
  ASSERT_TRUE(fs::exists(smoke)) << smoke << " is missing";
  Result listed = run({"list", "--matrix", smoke.string()});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  const auto ids = non_empty_lines(listed.out);
  ASSERT_FALSE(ids.empty());

  const fs::path out = dir_ / "out";
  Result r = run({"run", "--matrix", smoke.string(), "--out", out.string(), "--steps", "2",
                  "--jobs", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

  const auto env = nlohmann::json::parse(read_text(out / "environment.json"));
  const std::string env_id = env.at("id");
  EXPECT_EQ(env_id.size(), 12u);
  EXPECT_TRUE(env.at("facts").contains("libtorch"));

  const auto records = read_records(out / "records.jsonl");
  ASSERT_EQ(records.size(), ids.size()) << r.err;
  std::set<std::string> recorded;
  for (const auto& rec : records) {
    const std::string id = rec.at("case");
    recorded.insert(id);
    EXPECT_NE(rec.at("outcome"), "harness_error") << id << ": " << rec.at("message");
    EXPECT_NE(rec.at("outcome"), "crash") << id << ": " << rec.at("message");
    EXPECT_EQ(rec.at("environment"), env_id) << id;
    const double wall = rec.at("timings").at("wall_ms");
    const double overhead = rec.at("timings").at("overhead_ms");
    EXPECT_GT(wall, 0.0) << id;
    EXPECT_GE(overhead, 0.0) << id;
    EXPECT_LE(overhead, wall) << id;
    if (rec.at("outcome") == "ok") {
      EXPECT_FALSE(rec.at("losses").empty()) << id;
      EXPECT_LT(overhead, wall) << id << ": an ok case spent time in training steps";
    }
  }
  EXPECT_EQ(recorded, std::set<std::string>(ids.begin(), ids.end()));

  // The summary: counts per outcome adding up to the total, and where the records are.
  EXPECT_NE(r.out.find("total"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(std::to_string(ids.size()) + " of " + std::to_string(ids.size()) +
                       " cases recorded"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find((out / "records.jsonl").string()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(env_id), std::string::npos) << r.out;
  // Progress on stderr: one line per case when stderr is not a terminal.
  EXPECT_NE(r.err.find("[" + std::to_string(ids.size()) + "/" + std::to_string(ids.size()) + "]"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(out / "work")) << "scratch folders are removed";
}

}  // namespace
}  // namespace qlc::e2e
