// merge and diff on runs this test writes by hand (run folders and report.json files). Each
// expectation follows from the records below and the rules in merge.h / diff.h:
//   run A and run B: one machine (CPU "Test CPU", avx2, LibTorch 2.13.0), git revisions aaa and
//     bbb: one environment. B has case X failing (nan_loss) where A had it ok: B, later, wins.
//   run C: the same CPU with LibTorch 1.13.1: another environment, never mixed with A/B.
//   run G: a GPU run (cuda:0 on "Test GPU", compute capability 8.0, CUDA 12.1).
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "qlc/reports/diff.h"
#include "qlc/reports/merge.h"

namespace qlc::reports {
namespace {

namespace fs = std::filesystem;
using harness::Outcome;

const std::string kTail = "/amp=none/adapter=model/kbit=off/ckpt=off/stack=current/model=tiny";
const std::string kX = "nf4/param=fp32/compute=fp32/optim=adamw-fp32" + kTail;
const std::string kY = "nf4/param=fp16/compute=fp16/optim=adamw-fp32" + kTail;
const std::string kZ = "int8/param=bf16/compute=bf16/optim=adamw8bit" + kTail;

nlohmann::json environment(const std::string& libtorch, const std::string& revision,
                           bool gpu = false) {
  nlohmann::json facts = {{"cpu", {{"model", "Test CPU"}, {"isa", {"avx2"}}, {"usable_cores", 2}}},
                          {"libtorch", {{"version", libtorch}}},
                          {"os", {{"name", "Test OS"}}},
                          {"compiler", {{"name", "gcc " + revision}}},  // differs: not in the key
                          {"qlora_compat", {{"git_revision", revision}}},
                          {"cuda", {{"available", gpu}}}};
  if (gpu) {
    facts["cuda"]["devices"] = {{{"name", "Test GPU"}, {"compute_capability", "8.0"}}};
    facts["cuda"]["runtime_version"] = "12.1";
    facts["cuda"]["driver_version"] = "550." + revision;  // differs: not in the key
  }
  return {{"id", "env-" + libtorch + "-" + revision}, {"facts", facts}};
}

nlohmann::json record(const std::string& id, const std::string& outcome, double median = 10.0,
                      double p90 = 11.0) {
  nlohmann::json r = {{"case", id}, {"outcome", outcome}};
  if (outcome == "ok") r["timings"] = {{"step", {{"median_ms", median}, {"p90_ms", p90}}}};
  if (outcome != "ok" && outcome != "skipped") r["message"] = outcome + " happened\nline two";
  return r;
}

class MergeDiffTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("qlc_merge_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path run(const std::string& name, const nlohmann::json& env,
               const std::vector<nlohmann::json>& records) {
    const fs::path d = dir_ / name;
    fs::create_directories(d);
    std::ofstream r(d / "records.jsonl");
    for (const auto& rec : records) r << rec.dump() << "\n";
    std::ofstream(d / "environment.json") << env.dump();
    return d;
  }
  fs::path report_json(const std::string& name, int version, const nlohmann::json& env,
                       const std::vector<nlohmann::json>& records) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << nlohmann::json({{"report_version", version},
                                        {"environment", env},
                                        {"cases", records}})
                            .dump();
    return p;
  }
  static std::string error_of(const std::function<void()>& f) {
    try {
      f();
    } catch (const ReportError& e) {
      return e.what();
    }
    return "(no error)";
  }
  static std::string markdown(const std::vector<MergedEnvironment>& m) {
    std::ostringstream out;
    write_merged_markdown(m, out);
    return out.str();
  }

  fs::path dir_;
};

TEST_F(MergeDiffTest, SameEnvironmentIgnoresRevisionCompilerAndDriver) {
  const auto a = environment_key(environment("2.13.0", "aaa"), "cpu/" + kX);
  const auto b = environment_key(environment("2.13.0", "bbb"), "cpu/" + kX);
  const auto c = environment_key(environment("1.13.1", "aaa"), "cpu/" + kX);
  EXPECT_EQ(a.fields, b.fields);
  EXPECT_EQ(a.slug, b.slug);
  EXPECT_NE(a.fields, c.fields);
  EXPECT_NE(a.slug, c.slug);
  EXPECT_EQ(a.label, "CPU Test CPU · LibTorch 2.13.0");
  // A GPU case is keyed by its GPU, not by the host's CPU; the driver may differ.
  const auto g1 = environment_key(environment("2.13.0", "1", true), "cuda:0/" + kX);
  const auto g2 = environment_key(environment("2.13.0", "2", true), "cuda:0/" + kX);
  EXPECT_EQ(g1.fields, g2.fields);
  EXPECT_EQ(g1.label, "Test GPU (sm_80) · LibTorch 2.13.0 · CUDA 12.1");
  // The same machine's CPU cases go to its CPU column.
  EXPECT_EQ(environment_key(environment("2.13.0", "1", true), "cpu/" + kX).fields, a.fields);
}

TEST_F(MergeDiffTest, SameEnvironmentMergesLaterWinsOthersStayApart) {
  const fs::path a = run("a", environment("2.13.0", "aaa"),
                         {record("cpu/" + kX, "ok"), record("cpu/" + kY, "unsupported_dtype")});
  const fs::path b = run("b", environment("2.13.0", "bbb"),
                         {record("cpu/" + kX, "nan_loss"), record("cpu/" + kZ, "ok", 20, 21)});
  const fs::path c = run("c", environment("1.13.1", "aaa"), {record("cpu/" + kX, "ok", 30, 33)});
  const auto merged = merge_runs(load_all_inputs({a.string(), b.string(), c.string()}));
  ASSERT_EQ(merged.size(), 2u);
  // Columns by label: LibTorch 1.13.1 before 2.13.0.
  const MergedEnvironment& wheel = merged[1];
  EXPECT_EQ(wheel.sources, (std::vector<std::string>{a.string(), b.string()}));
  EXPECT_EQ(wheel.revisions, (std::vector<std::string>{"aaa", "bbb"}));
  ASSERT_EQ(wheel.records.size(), 3u);  // X, Y, Z: the union
  EXPECT_EQ(wheel.records[0].outcome, Outcome::kNanLoss);  // B's X replaced A's
  EXPECT_EQ(wheel.replaced, (std::vector<std::string>{"cpu/" + kX}));
  EXPECT_EQ(merged[0].records.size(), 1u);  // C alone: LibTorch 1.13.1
  EXPECT_EQ(merged[0].records[0].step_time.median_ms, 30.0);

  // The other order: A wins.
  const auto reversed = merge_runs(load_all_inputs({b.string(), a.string()}));
  ASSERT_EQ(reversed.size(), 1u);
  EXPECT_EQ(reversed[0].records[0].outcome, Outcome::kOk);

  const std::string md = markdown(merged);
  EXPECT_NE(md.find("| CPU Test CPU · LibTorch 2.13.0 | Test CPU | none | 2.13.0 | Test OS | aaa, bbb | 3 | 2 (1 cases in several"),
            std::string::npos) << md;
  // Y and Z ran in one environment only: "—" in the other; X differs (nan_loss vs ok).
  const size_t differ = md.find("## Where the environments differ"), all = md.find("## All cases");
  ASSERT_NE(differ, std::string::npos) << md;
  const std::string d = md.substr(differ, all - differ);
  EXPECT_NE(d.find("3 of 3 cases differ"), std::string::npos) << d;
  EXPECT_NE(d.find("| nf4 | fp32 | fp32 | adamw-fp32 | ✅ | 30.0 | ❌ nan_loss |  |"),
            std::string::npos) << d;
  EXPECT_NE(d.find("| int8 | bf16 | bf16 | adamw8bit | — |  | ✅ | 20.0 |"), std::string::npos) << d;
  // Axes with one value everywhere are said once, not repeated in every row; rows in the case
  // model's order (none, nf4, fp4, int8; fp32, fp16, bf16).
  EXPECT_NE(md.find("every one has amp=none, adapter_dtype=model"), std::string::npos) << md;
  EXPECT_LT(md.find("| nf4 | fp32 |", all), md.find("| nf4 | fp16 |", all));
  EXPECT_LT(md.find("| nf4 | fp16 |", all), md.find("| int8 |", all));
  // One section per failure cause (these records carry no prediction: the first message line).
  EXPECT_NE(md.find("### nan_loss: nan_loss happened\n\n- **Why:** no rule explains it"),
            std::string::npos) << md;
  EXPECT_NE(md.find("- **Cases:** `" + kX + "` (CPU Test CPU · LibTorch 2.13.0)"), std::string::npos);
  EXPECT_EQ(md, markdown(merged));  // deterministic: no dates, no paths
  EXPECT_EQ(md.find(dir_.string()), std::string::npos);
}

TEST_F(MergeDiffTest, MergeOutputReadsBackAsTheSameTable) {
  const fs::path a = run("a", environment("2.13.0", "aaa"),
                         {record("cpu/" + kX, "ok"), record("cpu/" + kY, "unsupported_dtype")});
  const fs::path c = run("c", environment("1.13.1", "aaa"), {record("cpu/" + kX, "ok", 30, 33)});
  const auto merged = merge_runs(load_all_inputs({a.string(), c.string()}));
  const fs::path out = dir_ / "out";
  const auto written = write_merge(merged, out.string());
  ASSERT_EQ(written.size(), 6u);  // compatibility.md and .html + a run folder (2 files) per environment
  for (const auto& e : fs::recursive_directory_iterator(out)) {
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
  }
  // The output folder (its runs/) is an input again: same environments, same page.
  const auto again = merge_runs(load_all_inputs({out.string()}));
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(markdown(again), markdown(merged));
}

// compatibility.html carries the same table as data: one row per case, one cell per environment
// (null where the case did not run there), each with the record's outcome and exact message; no
// message can end its script element, and nothing outside the file is referenced.
TEST_F(MergeDiffTest, MergedHtmlIsSelfContainedWithOneCellPerCaseAndEnvironment) {
  nlohmann::json y = record("cpu/" + kY, "unsupported_dtype");
  const std::string message = "</script><b>\"quoted\" & 'x'\ttab\nline two ü ✓";
  y["message"] = message;
  const fs::path a = run("a", environment("2.13.0", "aaa"), {record("cpu/" + kX, "ok"), y});
  const fs::path c = run("c", environment("1.13.1", "aaa"), {record("cpu/" + kX, "ok", 30, 33)});
  const auto merged = merge_runs(load_all_inputs({a.string(), c.string()}));
  std::ostringstream out;
  write_merged_html(merged, out);
  const std::string page = out.str();
  size_t closes = 0;
  for (size_t at = page.find("</script"); at != std::string::npos; at = page.find("</script", at + 1)) {
    ++closes;
  }
  EXPECT_EQ(closes, 2u);  // the data's and the code's own
  EXPECT_EQ(page.find("<b>"), std::string::npos);
  EXPECT_EQ(page.find("http://"), std::string::npos);
  EXPECT_EQ(page.find("https://"), std::string::npos);
  EXPECT_NE(page.find("default-src 'none'"), std::string::npos);

  const std::string open = "<script id=\"merged-data\" type=\"application/json\">";
  const size_t begin = page.find(open);
  ASSERT_NE(begin, std::string::npos);
  const size_t end = page.find("</script>", begin);
  const auto data = nlohmann::json::parse(page.substr(begin + open.size(), end - begin - open.size()));
  ASSERT_EQ(data.at("environments").size(), 2u);
  EXPECT_EQ(data["environments"][0]["label"], "CPU Test CPU · LibTorch 1.13.1");
  const auto& rows = data.at("rows");
  ASSERT_EQ(rows.size(), 2u);  // X then Y (fp32 before fp16)
  EXPECT_EQ(rows[0]["key"], kX);
  EXPECT_EQ(rows[0]["cells"][0]["step_ms"], 30.0);
  EXPECT_EQ(rows[0]["cells"][1]["outcome"], "ok");
  EXPECT_FALSE(rows[0]["differs"].get<bool>());
  EXPECT_EQ(rows[1]["key"], kY);
  EXPECT_TRUE(rows[1]["cells"][0].is_null());  // not run with LibTorch 1.13.1
  EXPECT_EQ(rows[1]["cells"][1]["outcome"], "unsupported_dtype");
  EXPECT_EQ(rows[1]["cells"][1]["message"], message);
  EXPECT_TRUE(rows[1]["differs"].get<bool>());
  std::ostringstream again;
  write_merged_html(merged, again);
  EXPECT_EQ(page, again.str());  // deterministic, like the Markdown
  EXPECT_EQ(page.find(dir_.string()), std::string::npos);
}

TEST_F(MergeDiffTest, BadInputsNameTheFileAndWhatWasExpected) {
  fs::create_directories(dir_ / "empty");
  EXPECT_NE(error_of([&] { load_all_inputs({(dir_ / "empty").string()}); })
                .find("empty: no run in this folder"),
            std::string::npos);
  // A run folder without records.
  std::ofstream(dir_ / "empty" / "environment.json") << environment("2.13.0", "a").dump();
  EXPECT_NE(error_of([&] { load_all_inputs({(dir_ / "empty").string()}); })
                .find("empty/records.jsonl: missing"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_all_inputs({(dir_ / "nowhere").string()}); })
                .find("nowhere: no such file or folder"),
            std::string::npos);
  std::ofstream(dir_ / "broken.json") << "{\"report_version\": 1, \"cases\": [";
  EXPECT_NE(error_of([&] { load_all_inputs({(dir_ / "broken.json").string()}); })
                .find("broken.json: not valid JSON at byte"),
            std::string::npos);
  const fs::path v1 = report_json("v1.json", 1, environment("2.13.0", "a"), {record("cpu/" + kX, "ok")});
  const fs::path v2 = report_json("v2.json", 2, environment("2.13.0", "a"), {});
  EXPECT_NE(error_of([&] { load_all_inputs({v2.string()}); })
                .find("v2.json: report_version 2, expected 1"),
            std::string::npos);
  const std::string mixed = error_of([&] { load_all_inputs({v1.string(), v2.string()}); });
  EXPECT_NE(mixed.find("mixed report versions: " + v1.string() + " has 1, " + v2.string() + " has 2"),
            std::string::npos) << mixed;
  // A run without its environment cannot be placed in a column.
  const fs::path bare = dir_ / "bare";
  fs::create_directories(bare);
  std::ofstream(bare / "records.jsonl") << record("cpu/" + kX, "ok").dump() << "\n";
  EXPECT_NE(error_of([&] { merge_runs(load_all_inputs({bare.string()})); })
                .find("bare: no environment facts"),
            std::string::npos);
}

TEST_F(MergeDiffTest, DiffClassifiesOutcomeChanges) {
  const auto env = environment("2.13.0", "a");
  const fs::path base = report_json(
      "base.json", 1, env,
      {record("cpu/" + kX, "ok"), record("cpu/" + kY, "unsupported_dtype"),
       record("cpu/" + kZ, "dtype_mismatch"),
       record("cpu/fp4/param=fp32/compute=fp32/optim=adamw-fp32" + kTail, "ok")});
  const fs::path next = report_json(
      "new.json", 1, environment("2.13.0", "b"),
      {record("cpu/" + kX, "nan_loss"), record("cpu/" + kY, "ok"), record("cpu/" + kZ, "crash"),
       record("cpu/none/param=fp32/compute=fp32/optim=adamw-fp32" + kTail, "skipped")});
  const DiffResult d = diff_runs(merge_runs(load_all_inputs({base.string()})),
                                 merge_runs(load_all_inputs({next.string()})));
  ASSERT_EQ(d.environments.size(), 1u);
  const auto& e = d.environments[0];
  EXPECT_EQ(e.compared, 3u);
  ASSERT_EQ(e.changes.size(), 5u);
  // Worst first.
  EXPECT_EQ(e.changes[0].change, Change::kRegression);
  EXPECT_EQ(e.changes[0].case_id, "cpu/" + kX);
  EXPECT_EQ(e.changes[0].message, "nan_loss happened");  // first line only
  EXPECT_EQ(e.changes[1].change, Change::kFix);
  EXPECT_EQ(e.changes[2].change, Change::kChangedFailure);
  EXPECT_EQ(e.changes[3].change, Change::kOnlyInBase);
  EXPECT_EQ(e.changes[4].change, Change::kOnlyInNew);
  EXPECT_EQ(d.regressions(), 1u);
  std::ostringstream text;
  write_diff_text(d, text);
  EXPECT_NE(text.str().find("1 regression(s)"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("ok -> nan_loss"), std::string::npos) << text.str();
  const nlohmann::json j = diff_json(d);
  EXPECT_EQ(j["regressions"], 1);
  EXPECT_EQ(j["environments"][0]["changes"][0]["change"], "regression");
  EXPECT_EQ(j["environments"][0]["changes"][0]["base"]["outcome"], "ok");
}

TEST_F(MergeDiffTest, TimingChangesOnlyBeyondTheRunsOwnNoise) {
  // Base: median 10, p90 11 for every case. Slower needs new median > 11 and >= 12.5.
  const std::string p = "cpu/nf4/param=fp32/compute=fp32/optim=";
  const std::vector<std::string> optims = {"adamw-fp32", "adamw-param", "adamw8bit",
                                           "paged-adamw8bit"};
  std::vector<nlohmann::json> base_records, new_records;
  for (const auto& o : optims) base_records.push_back(record(p + o + kTail, "ok", 10, 11));
  new_records.push_back(record(p + optims[0] + kTail, "ok", 12.6, 13));  // slower: beyond both
  new_records.push_back(record(p + optims[1] + kTail, "ok", 12.0, 30));  // +20%: under the floor
  new_records.push_back(record(p + optims[2] + kTail, "ok", 7.9, 7.95)); // faster: 10 >= 1.25 x 7.9
  new_records.push_back(record(p + optims[3] + kTail, "ok", 7.0, 10.5)); // p90 above base median
  const DiffResult d = diff_runs(
      merge_runs(load_all_inputs({report_json("b.json", 1, environment("2.13.0", "a"), base_records).string()})),
      merge_runs(load_all_inputs({report_json("n.json", 1, environment("2.13.0", "a"), new_records).string()})));
  ASSERT_EQ(d.environments.size(), 1u);
  const auto& c = d.environments[0].changes;
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].change, Change::kSlower);
  EXPECT_EQ(c[0].case_id, p + optims[0] + kTail);
  EXPECT_EQ(c[1].change, Change::kFaster);
  EXPECT_EQ(c[1].case_id, p + optims[2] + kTail);
  EXPECT_EQ(d.regressions(), 0u);  // timing never counts as a regression
  // Overall: the median of 12.6/10, 12/10, 7.9/10, 7/10 = (0.79 + 1.2) / 2.
  EXPECT_EQ(d.environments[0].timed, 4u);
  EXPECT_NEAR(d.environments[0].overall_ratio, 0.995, 1e-12);
}

TEST_F(MergeDiffTest, DiffPairsEnvironmentsByKey) {
  // BASE: two environments (2.13 and 1.13); NEW: 2.13 only, with another revision. Only the
  // 2.13 columns are compared; the 1.13 one is listed as only in BASE.
  const fs::path base = dir_ / "base";
  fs::create_directories(base);
  report_json("base/w.json", 1, environment("2.13.0", "a"), {record("cpu/" + kX, "ok")});
  report_json("base/d.json", 1, environment("1.13.1", "a"), {record("cpu/" + kX, "nan_loss")});
  const fs::path next =
      report_json("n.json", 1, environment("2.13.0", "b"), {record("cpu/" + kX, "ok")});
  const DiffResult d = diff_runs(merge_runs(load_all_inputs({base.string()})),
                                 merge_runs(load_all_inputs({next.string()})));
  ASSERT_EQ(d.environments.size(), 1u);
  EXPECT_EQ(d.environments[0].base_label, "CPU Test CPU · LibTorch 2.13.0");
  EXPECT_TRUE(d.environments[0].changes.empty());
  EXPECT_EQ(d.only_in_base, (std::vector<std::string>{"CPU Test CPU · LibTorch 1.13.1"}));
  // One environment on each side: paired even though they differ (what changes with 1.13).
  const DiffResult across = diff_runs(
      merge_runs(load_all_inputs({(base / "d.json").string()})),
      merge_runs(load_all_inputs({next.string()})));
  ASSERT_EQ(across.environments.size(), 1u);
  EXPECT_EQ(across.environments[0].changes[0].change, Change::kFix);
}

}  // namespace
}  // namespace qlc::reports
