// Bad inputs: each gets exactly one clear error line on stderr, a non-zero exit, and no records.
#include <string>
#include <vector>

#include "cli_support.h"

namespace qlc::e2e {
namespace {

class BadInputTest : public CliTest {
 protected:
  // Runs the CLI and checks: exit status 1, nothing on stdout, one stderr line that starts with
  // "qlora-compat: error:" and contains every `expected` part.
  void expect_one_error(const std::vector<std::string>& args,
                        const std::vector<std::string>& expected) {
    Result r = run(args, std::chrono::seconds(120));
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_EQ(r.out, "");
    auto lines = non_empty_lines(r.err);
    ASSERT_EQ(lines.size(), 1u) << r.err;
    EXPECT_EQ(lines[0].rfind("qlora-compat: error: ", 0), 0u) << lines[0];
    for (const auto& part : expected) {
      EXPECT_NE(lines[0].find(part), std::string::npos) << "'" << part << "' not in: " << lines[0];
    }
  }
  fs::path out() const { return dir_ / "out"; }
};

TEST_F(BadInputTest, UnknownAxisValueNamesFileLineColumn) {
  // Line 3, column 17: the 'bf8' in the list.
  const fs::path m = matrix("matrix:\n  weights: [nf4]\n  param_dtype: [bf8]\n");
  expect_one_error({"run", "--matrix", m.string(), "--out", out().string()},
                   {m.string() + ":3:17", "bf8", "param_dtype"});
  EXPECT_FALSE(fs::exists(out())) << "nothing may be created for a bad matrix";
}

TEST_F(BadInputTest, UnknownAxisValueInListToo) {
  const fs::path m = matrix("matrix:\n  weights: [nf5]\n");
  expect_one_error({"list", "--matrix", m.string()}, {m.string() + ":2:13", "nf5"});
}

TEST_F(BadInputTest, MalformedYamlNamesFileLineColumn) {
  // The flow sequence on line 2 is never closed.
  const fs::path m = matrix("matrix:\n  weights: [nf4, int8\n  param_dtype: [fp32]\n");
  Result r = run({"run", "--matrix", m.string(), "--out", out().string()});
  EXPECT_EQ(r.exit_code, 1);
  auto lines = non_empty_lines(r.err);
  ASSERT_EQ(lines.size(), 1u) << r.err;
  // file:line:column, with numbers.
  const std::string prefix = "qlora-compat: error: " + m.string() + ":";
  ASSERT_EQ(lines[0].rfind(prefix, 0), 0u) << lines[0];
  int line = 0, column = 0;
  EXPECT_EQ(std::sscanf(lines[0].c_str() + prefix.size(), "%d:%d:", &line, &column), 2)
      << lines[0];
  EXPECT_GE(line, 2);
  EXPECT_GE(column, 1);
  EXPECT_FALSE(fs::exists(out()));
}

TEST_F(BadInputTest, MissingMatrixFile) {
  expect_one_error({"run", "--matrix", (dir_ / "nope.yaml").string(), "--out", out().string()},
                   {"nope.yaml", "not found"});
}

TEST_F(BadInputTest, DefaultMatrixMissingOutsideTheProject) {
  // The scratch folder has no cases/default.yaml.
  expect_one_error({"list"}, {"cases/default.yaml", "--matrix"});
}

TEST_F(BadInputTest, UnwritableOutputFolder) {
  // A path under a regular file cannot be created, whoever runs the test (root included).
  const fs::path blocker = dir_ / "file";
  write_text(blocker, "x");
  const fs::path m = matrix(kFourCases);
  expect_one_error({"run", "--matrix", m.string(), "--out", (blocker / "out").string()},
                   {(blocker / "out").string()});
}

TEST_F(BadInputTest, ExistingRecordsWithoutResume) {
  const fs::path m = matrix(kFourCases);
  fs::create_directories(out());
  const std::string earlier =
      R"({"case":"cpu/none/param=fp32/compute=fp32/optim=adamw-fp32","outcome":"ok"})"
      "\n";
  write_text(out() / "records.jsonl", earlier);
  expect_one_error({"run", "--matrix", m.string(), "--out", out().string()},
                   {"records.jsonl", "--resume", "--out"});
  EXPECT_EQ(read_text(out() / "records.jsonl"), earlier);
}

TEST_F(BadInputTest, CorruptRecordsFileOnResume) {
  const fs::path m = matrix(kFourCases);
  fs::create_directories(out());
  // Line 2 is damaged (not the last line, so not a write cut short by a crash).
  write_text(out() / "records.jsonl",
             R"({"case":"cpu/none/param=fp32/compute=fp32/optim=adamw-fp32","outcome":"ok"})"
             "\n{\"case\": garbage\n"
             R"({"case":"cpu/nf4/param=fp32/compute=fp32/optim=adamw-fp32","outcome":"ok"})"
             "\n");
  expect_one_error({"run", "--matrix", m.string(), "--out", out().string(), "--resume"},
                   {"records.jsonl:2"});
}

TEST_F(BadInputTest, BadShard) {
  const fs::path m = matrix(kFourCases);
  expect_one_error({"list", "--matrix", m.string(), "--shard", "3/2"}, {"--shard", "3/2"});
  expect_one_error({"list", "--matrix", m.string(), "--shard", "x"}, {"--shard"});
  expect_one_error({"list", "--matrix", m.string(), "--shard", "0/2"}, {"--shard"});
}

TEST_F(BadInputTest, BadDevice) {
  const fs::path m = matrix(kFourCases);
  expect_one_error({"list", "--matrix", m.string(), "--device", "gpu"}, {"--device", "gpu"});
}

TEST_F(BadInputTest, FilterMatchingNothing) {
  const fs::path m = matrix(kFourCases);
  expect_one_error({"run", "--matrix", m.string(), "--out", out().string(), "--filter", "nf5"},
                   {"--filter", "nf5"});
  EXPECT_FALSE(fs::exists(out()));
}

// `check` takes one id: a malformed one is reported as such (like `explain`), never as a
// --filter the user did not pass.
TEST_F(BadInputTest, CheckSaysWhatIsWrongWithTheId) {
  const fs::path m = matrix(kFourCases);
  Result r = run({"check", "cpu/nf5/param=fp32", "--matrix", m.string(), "--out", out().string()});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  auto lines = non_empty_lines(r.err);
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_EQ(lines[0].rfind("qlora-compat: error: case id: ", 0), 0u) << lines[0];
  EXPECT_EQ(lines[0].find("--filter"), std::string::npos) << lines[0];
}

// "--filter ," has only empty parts: an error, not a run of everything.
TEST_F(BadInputTest, FilterWithOnlyEmptyPartsIsAnError) {
  const fs::path m = matrix(kFourCases);
  expect_one_error({"list", "--matrix", m.string(), "--filter", ","}, {"--filter", "empty"});
  expect_one_error({"run", "--matrix", m.string(), "--out", out().string(), "--filter", " , "},
                   {"--filter", "empty"});
  EXPECT_FALSE(fs::exists(out()));
}

TEST_F(BadInputTest, BadNumbersAndUnknownOptions) {
  const fs::path m = matrix(kFourCases);
  expect_one_error({"run", "--matrix", m.string(), "--jobs", "0"}, {"--jobs"});
  expect_one_error({"run", "--matrix", m.string(), "--timeout", "-1"}, {"--timeout"});
  expect_one_error({"run", "--matrix", m.string(), "--isolation", "thread"}, {"--isolation"});
  expect_one_error({"check", "x", "--out", out().string(), "--timeout", "-1"}, {"--timeout"});
}

// NaN compares false with every bound, so a plain range check lets it through (and a NaN time
// limit converted to an integer duration is undefined behaviour); inf and huge values must be
// refused without printing DBL_MAX (309 digits) as the bound.
TEST_F(BadInputTest, NonFiniteOrHugeTimeoutRefusedReadably) {
  const fs::path m = matrix(kFourCases);
  for (const std::string bad : {"nan", "NaN", "inf", "-inf", "1e400", "0", "-1", "1e7", "5s"}) {
    SCOPED_TRACE(bad);
    Result r = run({"run", "--matrix", m.string(), "--out", out().string(), "--timeout", bad});
    EXPECT_EQ(r.exit_code, 1) << r.err;
    auto lines = non_empty_lines(r.err);
    ASSERT_EQ(lines.size(), 1u) << r.err;
    EXPECT_NE(lines[0].find("--timeout"), std::string::npos) << lines[0];
    EXPECT_NE(lines[0].find("at most 1000000"), std::string::npos) << lines[0];
    EXPECT_LT(lines[0].size(), 200u) << lines[0];
    EXPECT_FALSE(fs::exists(out()));
  }
  expect_one_error({"run", "--matrix", m.string(), "--bogus"}, {"--bogus"});
  expect_one_error({"frobnicate"}, {"frobnicate"});
  expect_one_error({"run", "--matrix", m.string(), "--isolation", "none", "--jobs", "2"},
                   {"--isolation"});
}

}  // namespace
}  // namespace qlc::e2e
