// Rules through the CLI: `check` (one case against its prediction, as ctest runs it), fix
// verification, a mispredicting rule failing exactly the cases it covers, `explain`, and bad
// rules files.
#include <set>
#include <string>

#include "cli_support.h"

namespace qlc::e2e {
namespace {

// fp16 parameters with AdamW states in fp16. The shipped rules predict a failure for it on every
// CPU LibTorch this project runs on (nan_loss from eps underflow on LibTorch 2.x, no fp16 matrix
// products on LibTorch 1.x), each with a fix.
constexpr const char* kFp16StatesCase = "cpu/none/param=fp16/compute=fp32/optim=adamw-param";
constexpr const char* kFp16Matrix =
    "matrix:\n"
    "  device: [cpu]\n"
    "  weights: [none]\n"
    "  param_dtype: [fp16]\n"
    "  compute_dtype: [fp32]\n"
    "  optimizer: [adamw-param]\n";

// Predicts nan_loss for every nf4 case: wrong for the all-fp32 nf4 case, which trains.
constexpr const char* kWrongRules =
    "rules:\n"
    "  - id: nf4-wrongly-fails\n"
    "    when: {weights: nf4}\n"
    "    predict: nan_loss\n"
    "    why: a deliberately wrong rule\n"
    "    detect: nothing\n"
    "    source: this test\n"
    "  - id: default\n"
    "    when: {}\n"
    "    predict: ok\n"
    "    why: the rest trains\n"
    "    detect: nothing\n"
    "    source: this test\n";

class RulesCliTest : public CliTest {
 protected:
  // The shipped rules beside a test matrix (where `run` and `check` look by default).
  fs::path matrix_with_shipped_rules(const std::string& yaml) {
    write_text(dir_ / "rules.yaml", read_text(source_dir() / "cases" / "rules.yaml"));
    return matrix(yaml);
  }
};

TEST_F(RulesCliTest, CheckPassesAsPredictedAndVerifiesTheFix) {
  const fs::path m = matrix_with_shipped_rules(kFp16Matrix);
  const fs::path out = dir_ / "out";
  Result r = run({"check", kFp16StatesCase, "--matrix", m.string(), "--out", out.string(),
                  "--steps", "2"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  // A five-part id of the original core names its case; the output spells it in full.
  EXPECT_NE(r.out.find("as predicted: " + full_id(kFp16StatesCase)), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("fix verified"), std::string::npos) << r.out;

  const fs::path record_file =
      out / "cases" /
      "cpu_none_param=fp16_compute=fp32_optim=adamw-param_amp=none_adapter=model_kbit=off_ckpt=off_"
      "stack=current_model=tiny.jsonl";
  auto records = read_records(record_file);
  ASSERT_EQ(records.size(), 1u);
  const auto& rec = records[0];
  EXPECT_NE(rec.at("outcome"), "ok");  // the case fails, as its rule says
  EXPECT_EQ(rec.at("prediction").at("outcome"), rec.at("outcome"));
  EXPECT_FALSE(rec.at("prediction").at("fix").get<std::string>().empty());
  ASSERT_TRUE(rec.contains("fix_check")) << rec.dump();
  EXPECT_EQ(rec.at("fix_check").at("outcome"), "ok");
  EXPECT_TRUE(rec.at("fix_check").at("verified").get<bool>());
  EXPECT_NE(rec.at("fix_check").at("case"), full_id(kFp16StatesCase));

  // `collect` gathers the check's record; `explain` shows prediction, audit and the fix check.
  Result c = run({"collect", "--out", out.string()});
  EXPECT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(read_records(out / "records.jsonl").size(), 1u);
  EXPECT_NE(c.out.find("fixes: 1 verified, 0 failed"), std::string::npos) << c.out;
  // ... and writes the reports next to the records, naming each.
  for (const char* name : {"report.md", "report.csv", "report.json"}) {
    EXPECT_TRUE(fs::exists(out / name)) << name;
    EXPECT_NE(c.out.find("report: " + (out / name).string()), std::string::npos) << c.out;
  }
  Result e = run({"explain", kFp16StatesCase, "--matrix", m.string(), "--records",
                  record_file.string()});
  EXPECT_EQ(e.exit_code, 0) << e.err;
  EXPECT_NE(e.out.find("predicted " + rec.at("outcome").get<std::string>()), std::string::npos) << e.out;
  EXPECT_NE(e.out.find("audit: "), std::string::npos) << e.out;
  EXPECT_NE(e.out.find("FAIL "), std::string::npos) << "the audit names the problem before training\n" << e.out;
  EXPECT_NE(e.out.find("fix verified on this machine"), std::string::npos) << e.out;
}

// Four fp16 cases, two of them with fp16 AdamW states whose fix (fp32 states) is a case beside them.
constexpr const char* kFp16StatesAndTheirFixes =
    "matrix:\n"
    "  device: [cpu]\n"
    "  weights: [none, nf4]\n"
    "  param_dtype: [fp16]\n"
    "  compute_dtype: [fp32]\n"
    "  optimizer: [adamw-param, adamw-fp32]\n";

// Each failing case's fix (fp32 states, on LibTorch 2.x) is also a case of the matrix, so with two
// jobs a fix check runs while the case of the same id runs beside it. Each used to remove the
// folder both worked in ("worker exited with code 3 without a record", the fix "failed").
// How many cases fail depends on the LibTorch (1.13 has no fp16 matmul on the CPU, so all four
// fail there; on 2.x the two fp16-state cases do): every failing case with a fix gets its check.
TEST_F(RulesCliTest, FixCheckBesideTheCaseOfTheSameIdKeepsItsOwnFolder) {
  const fs::path m = matrix_with_shipped_rules(kFp16StatesAndTheirFixes);
  const fs::path out = dir_ / "out";
  Result r = run({"run", "--matrix", m.string(), "--out", out.string(), "--steps", "2", "--jobs",
                  "2"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  const auto records = read_records(out / "records.jsonl");
  ASSERT_EQ(records.size(), 4u) << r.out;
  int fix_checks = 0;
  int failing_with_a_fix = 0;
  for (const auto& rec : records) {
    EXPECT_NE(rec.at("outcome"), "harness_error") << rec.dump();
    failing_with_a_fix += rec.at("outcome") != "ok" &&
                          !rec.at("prediction").value("fix", std::string()).empty();
    if (!rec.contains("fix_check")) continue;
    ++fix_checks;
    EXPECT_TRUE(rec.at("fix_check").at("verified").get<bool>()) << rec.dump();
  }
  EXPECT_GE(fix_checks, 2) << r.out;
  EXPECT_EQ(fix_checks, failing_with_a_fix) << r.out;
}

// A case id trains once per run: a fix check whose fixed case is a case of the run takes that
// case's record (or the case takes its fix check's), whichever ran first; with --keep-work every
// training leaves its own folder, so the folders count the trainings.
TEST_F(RulesCliTest, EachCaseIdTrainsOncePerRunFixChecksIncluded) {
  const fs::path m = matrix_with_shipped_rules(kFp16StatesAndTheirFixes);
  const fs::path out = dir_ / "out";
  Result r = run({"run", "--matrix", m.string(), "--out", out.string(), "--steps", "2", "--jobs",
                  "2", "--keep-work"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  std::set<std::string> trained;
  int fix_checks = 0;
  for (const auto& rec : read_records(out / "records.jsonl")) {
    trained.insert(rec.at("case").get<std::string>());
    if (!rec.contains("fix_check")) continue;
    ++fix_checks;
    trained.insert(rec.at("fix_check").at("case").get<std::string>());
  }
  ASSERT_GE(fix_checks, 2) << r.out;
  int folders = 0;
  for (const auto& entry : fs::directory_iterator(out / "work")) folders += entry.is_directory();
  EXPECT_EQ(folders, static_cast<int>(trained.size())) << r.out;
}

TEST_F(RulesCliTest, MispredictingRuleFailsExactlyTheCasesItCovers) {
  const fs::path m = matrix(kFourCases);  // none, nf4, fp4, int8, all fp32: every one trains
  write_text(dir_ / "wrong.yaml", kWrongRules);
  const fs::path out = dir_ / "out";
  Result r = run({"run", "--matrix", m.string(), "--rules", (dir_ / "wrong.yaml").string(),
                  "--out", out.string(), "--steps", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  int mispredicted = 0;
  for (const auto& rec : read_records(out / "records.jsonl")) {
    const bool nf4 = rec.at("case").get<std::string>().find("/nf4/") != std::string::npos;
    EXPECT_EQ(rec.at("prediction").at("rule"), nf4 ? "nf4-wrongly-fails" : "default");
    mispredicted += rec.at("prediction").at("outcome") != rec.at("outcome");
    EXPECT_EQ(rec.at("prediction").at("outcome") != rec.at("outcome"), nf4) << rec.at("case");
  }
  EXPECT_EQ(mispredicted, 1);
  EXPECT_NE(r.out.find("predictions: 3 of 4 as predicted"), std::string::npos) << r.out;

  // As a ctest test: the covered case fails and shows both sides and the rule; another passes.
  const std::string nf4_case = "cpu/nf4/param=fp32/compute=fp32/optim=adamw-fp32";
  Result bad = run({"check", nf4_case, "--matrix", m.string(), "--rules",
                    (dir_ / "wrong.yaml").string(), "--out", out.string(), "--steps", "2"});
  EXPECT_EQ(bad.exit_code, 1) << bad.out << bad.err;
  EXPECT_NE(bad.out.find("NOT AS PREDICTED: " + full_id(nf4_case)), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find("predicted nan_loss, observed ok"), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find("rule:     nf4-wrongly-fails (" + (dir_ / "wrong.yaml").string() + ":2)"),
            std::string::npos)
      << bad.out;
  Result good = run({"check", "cpu/fp4/param=fp32/compute=fp32/optim=adamw-fp32", "--matrix",
                     m.string(), "--rules", (dir_ / "wrong.yaml").string(), "--out", out.string(),
                     "--steps", "2"});
  EXPECT_EQ(good.exit_code, 0) << good.out << good.err;
}

TEST_F(RulesCliTest, BadRulesFilesGetOneErrorNamingFileLineAndRule) {
  const fs::path m = matrix(kFourCases);
  const std::string bad_outcome =
      "rules:\n"
      "  - id: x\n"
      "    when: {}\n"
      "    predict: explodes\n"
      "    why: w\n"
      "    detect: d\n"
      "    source: s\n";
  write_text(dir_ / "bad.yaml", bad_outcome);
  Result r = run({"run", "--matrix", m.string(), "--rules", (dir_ / "bad.yaml").string(), "--out",
                  (dir_ / "out").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find((dir_ / "bad.yaml").string() + ":4"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("rule 'x'"), std::string::npos) << r.err;
  EXPECT_EQ(non_empty_lines(r.err).size(), 1u) << r.err;

  // Contradictory: the same condition twice.
  std::string twice = std::string(kWrongRules);
  twice.insert(twice.find("  - id: default"),
               "  - id: nf4-again\n    when: {weights: [nf4]}\n    predict: ok\n"
               "    why: w\n    detect: d\n    source: s\n");
  write_text(dir_ / "twice.yaml", twice);
  Result t = run({"check", "cpu/nf4/param=fp32/compute=fp32/optim=adamw-fp32", "--matrix",
                  m.string(), "--rules", (dir_ / "twice.yaml").string(), "--out",
                  (dir_ / "out2").string()});
  EXPECT_EQ(t.exit_code, 1);
  EXPECT_NE(t.err.find("twice.yaml:8: rule 'nf4-again'"), std::string::npos) << t.err;
  EXPECT_NE(t.err.find("nf4-wrongly-fails"), std::string::npos) << t.err;

  // A missing rules file is named as such.
  Result missing = run({"run", "--matrix", m.string(), "--rules", (dir_ / "nope.yaml").string(),
                        "--out", (dir_ / "out3").string()});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("nope.yaml' not found"), std::string::npos) << missing.err;
}

}  // namespace
}  // namespace qlc::e2e
