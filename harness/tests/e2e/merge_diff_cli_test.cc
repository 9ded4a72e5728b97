// `qlora-compat merge` and `diff` on real runs (2 training steps per case, on the CPU): BASE runs
// two fp32 cases; NEW runs them with a planted regression, a settings change (learning rate
// 1e-9: the loss cannot go down, so both end in no_learning), plus a case BASE does not have.
#include <string>

#include "cli_support.h"

namespace qlc::e2e {
namespace {

constexpr const char* kBase =
    "matrix:\n"
    "  device: [cpu]\n"
    "  weights: [none, nf4]\n"
    "  param_dtype: [fp32]\n"
    "  compute_dtype: [fp32]\n"
    "  optimizer: [adamw-fp32]\n"
    "settings:\n"
    "  steps: 2\n";

constexpr const char* kNew =
    "matrix:\n"
    "  device: [cpu]\n"
    "  weights: [none, nf4, int8]\n"
    "  param_dtype: [fp32]\n"
    "  compute_dtype: [fp32]\n"
    "  optimizer: [adamw-fp32]\n"
    "settings:\n"
    "  steps: 2\n"
    "  learning_rate: 1.0e-9\n";

TEST_F(CliTest, DiffFindsAPlantedRegressionInRealRuns) {
  const fs::path base = dir_ / "base", next = dir_ / "new";
  Result b = run({"run", "--matrix", matrix(kBase, "base.yaml").string(), "--out", base.string(),
                  "--jobs", "2"});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  Result n = run({"run", "--matrix", matrix(kNew, "new.yaml").string(), "--out", next.string(),
                  "--jobs", "2"});
  ASSERT_EQ(n.exit_code, 0) << n.err;
  for (const auto& r : read_records(base / "records.jsonl")) ASSERT_EQ(r.at("outcome"), "ok") << r;

  Result d = run({"diff", base.string(), next.string()});
  EXPECT_EQ(d.exit_code, 4) << d.out << d.err;  // a regression
  EXPECT_NE(d.out.find("ok -> no_learning"), std::string::npos) << d.out;
  EXPECT_NE(d.out.find("2 regression(s)"), std::string::npos) << d.out;
  EXPECT_NE(d.out.find("only_in_new  cpu/int8/"), std::string::npos) << d.out;

  // The other way round: fixes, exit 0; JSON names each change.
  Result back = run({"diff", next.string(), base.string(), "--format", "json"});
  EXPECT_EQ(back.exit_code, 0) << back.out << back.err;
  const auto j = nlohmann::json::parse(back.out);
  EXPECT_EQ(j.at("regressions"), 0);
  const auto& changes = j.at("environments").at(0).at("changes");
  ASSERT_EQ(changes.size(), 3u) << j.dump(2);
  EXPECT_EQ(changes.at(0).at("change"), "fix");
  EXPECT_EQ(changes.at(1).at("change"), "fix");
  EXPECT_EQ(changes.at(2).at("change"), "only_in_base");

  // A run against itself: nothing changed, exit 0.
  Result same = run({"diff", base.string(), base.string()});
  EXPECT_EQ(same.exit_code, 0) << same.out;
  EXPECT_NE(same.out.find("no change"), std::string::npos) << same.out;

  // merge: both runs come from this machine and build, so one column; the later input wins for
  // the two cases both have, and the output says so.
  const fs::path merged = dir_ / "merged";
  Result m = run({"merge", base.string(), next.string(), "--out", merged.string()});
  ASSERT_EQ(m.exit_code, 0) << m.err;
  EXPECT_NE(m.out.find("3 cases from 2 run(s); 2 case(s) in more than one: the later run's"),
            std::string::npos) << m.out;
  const std::string md = read_text(merged / "compatibility.md");
  EXPECT_NE(md.find("❌ no_learning"), std::string::npos) << md;
  EXPECT_EQ(md.find("✅"), md.rfind("✅ works")) << "only the legend has a ✅: NEW won\n" << md;
  // The merge's output is an input of diff as it is.
  Result dm = run({"diff", base.string(), merged.string()});
  EXPECT_EQ(dm.exit_code, 4) << dm.out;
}

TEST_F(CliTest, MergeAndDiffRefuseBadInputNamingTheFile) {
  fs::create_directories(dir_ / "norecords");
  write_text(dir_ / "norecords" / "environment.json", "{\"id\": \"x\", \"facts\": {}}");
  Result m = run({"merge", (dir_ / "norecords").string(), "--out", (dir_ / "o").string()});
  EXPECT_EQ(m.exit_code, 1);
  EXPECT_NE(m.err.find("norecords/records.jsonl: missing"), std::string::npos) << m.err;
  EXPECT_FALSE(fs::exists(dir_ / "o" / "compatibility.md"));

  write_text(dir_ / "old.json", "{\"report_version\": 0, \"cases\": []}");
  Result d = run({"diff", (dir_ / "old.json").string(), (dir_ / "old.json").string()});
  EXPECT_EQ(d.exit_code, 1);
  EXPECT_NE(d.err.find("old.json: report_version 0, expected 1"), std::string::npos) << d.err;

  Result f = run({"diff", "a", "b", "--format", "xml"});
  EXPECT_EQ(f.exit_code, 1);
}

}  // namespace
}  // namespace qlc::e2e
