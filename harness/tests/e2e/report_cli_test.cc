// `qlora-compat report` on a real small run (a few cases of cases/smoke.yaml, 2 steps): every
// format written, one CSV row and one table mark per recorded case; and the errors for a
// missing or malformed run folder, which name the file (and line).
#include <string>

#include "cli_support.h"

namespace qlc::e2e {
namespace {

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST_F(CliTest, ReportOfARealRun) {
  const fs::path smoke = source_dir() / "cases" / "smoke.yaml";
  const fs::path out = dir_ / "run";
  Result r = run({"run", "--matrix", smoke.string(), "--out", out.string(), "--steps", "2",
                  "--device", "cpu", "--filter", "/none/,/nf4-dq/", "--jobs", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const size_t cases = read_records(out / "records.jsonl").size();
  ASSERT_GT(cases, 0u);

  const fs::path reports = dir_ / "reports";
  Result rep = run({"report", "--in", out.string(), "--out", reports.string(), "--rules",
                    (source_dir() / "cases" / "rules.yaml").string()});
  ASSERT_EQ(rep.exit_code, 0) << rep.err;
  // Every format by default.
  for (const char* name : {"report.md", "report.csv", "report.json", "junit.xml", "report.html"}) {
    EXPECT_TRUE(fs::exists(reports / name)) << name;
    EXPECT_NE(rep.out.find((reports / name).string()), std::string::npos) << rep.out;
  }
  const std::string md = read_text(reports / "report.md");
  const size_t table = md.find("## Compatibility"), legend = md.find("Legend:");
  ASSERT_NE(legend, std::string::npos) << md;
  const std::string t = md.substr(table, legend - table);
  EXPECT_EQ(count(t, "✅") + count(t, "❌") + count(t, "⏭️"), cases) << t;
  // Header + one CRLF-terminated row per case (messages hold no CR).
  EXPECT_EQ(count(read_text(reports / "report.csv"), "\r\n"), cases + 1);
  const auto j = nlohmann::json::parse(read_text(reports / "report.json"));
  EXPECT_EQ(j.at("cases").size(), cases);
  EXPECT_EQ(j.at("environment").at("id"),
            nlohmann::json::parse(read_text(out / "environment.json")).at("id"));

  // Only the formats asked for; default folder: the run's own.
  Result csv_only = run({"report", "--in", out.string(), "--format", "csv"});
  ASSERT_EQ(csv_only.exit_code, 0) << csv_only.err;
  EXPECT_TRUE(fs::exists(out / "report.csv"));
  EXPECT_FALSE(fs::exists(out / "report.md"));
}

TEST_F(CliTest, ReportOfABadRunFolderNamesTheFile) {
  Result missing = run({"report", "--in", (dir_ / "nowhere").string()});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("nowhere"), std::string::npos) << missing.err;

  const fs::path bad = dir_ / "bad";
  fs::create_directories(bad);
  write_text(bad / "records.jsonl", "{\"case\": \"x\", \"outcome\": \"ok\"}\nnot json\n");
  Result malformed = run({"report", "--in", bad.string()});
  EXPECT_EQ(malformed.exit_code, 1);
  EXPECT_NE(malformed.err.find("records.jsonl:2:"), std::string::npos) << malformed.err;

  Result format = run({"report", "--in", bad.string(), "--format", "pdf"});
  EXPECT_EQ(format.exit_code, 1);
  EXPECT_NE(format.err.find("'pdf' (expected md, csv, json, junit, html or all)"), std::string::npos) << format.err;
}

}  // namespace
}  // namespace qlc::e2e
