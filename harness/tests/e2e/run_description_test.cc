// A run says what it ran: environment.json's run.matrix holds the matrix file and selection as
// given, the rules file of the predictions and the settings every case trained with; report.json
// carries it and report.md's header shows it.
#include <string>

#include "cli_support.h"

namespace qlc::e2e {
namespace {

TEST_F(CliTest, RunRecordsItsMatrixSelectionRulesAndSettings) {
  const fs::path m = matrix(
      "matrix:\n"
      "  device: [cpu]\n"
      "  weights: [none, nf4]\n"
      "  param_dtype: [fp32]\n"
      "  compute_dtype: [fp32]\n"
      "  optimizer: [adamw-fp32]\n"
      "settings:\n"
      "  lora_rank: 4\n"
      "  seed: 7\n");
  const fs::path out = dir_ / "out";
  Result r = run({"run", "--matrix", m.string(), "--out", out.string(), "--steps", "2",
                  "--filter", "nf4", "--rules", "none"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

  const auto env = nlohmann::json::parse(read_text(out / "environment.json"));
  const auto& d = env.at("run").at("matrix");
  EXPECT_EQ(d.at("file"), m.string());
  EXPECT_EQ(d.at("filter"), "nf4");
  EXPECT_EQ(d.at("shard"), "");
  EXPECT_EQ(d.at("cases"), 1);  // --filter nf4 keeps one of the two
  EXPECT_EQ(d.at("rules"), "none");
  EXPECT_EQ(d.at("settings").at("steps"), 2);  // --steps over the matrix's default
  EXPECT_EQ(d.at("settings").at("lora_rank"), 4);  // from the matrix's settings
  EXPECT_EQ(d.at("settings").at("seed"), 7);

  Result rep = run({"report", "--in", out.string(), "--format", "json,md"});
  ASSERT_EQ(rep.exit_code, 0) << rep.err;
  const auto report = nlohmann::json::parse(read_text(out / "report.json"));
  EXPECT_EQ(report.at("environment").at("run").at("matrix"), d);
  const std::string md = read_text(out / "report.md");
  EXPECT_NE(md.find("| matrix file | " + m.string() + "; --filter nf4; rules none |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("lora_rank 4"), std::string::npos) << md;
  EXPECT_NE(md.find("steps 2"), std::string::npos) << md;
}

}  // namespace
}  // namespace qlc::e2e
