// The writers on a run folder this test writes by hand: three records (a case that works, a
// predicted fp16 failure whose message holds a comma, quotes, a pipe and a newline, a skipped
// case), one of them with a five-part core id. Every expectation below follows from those
// records and the format rules (RFC 4180, the table layout), not from an earlier output.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "csv_field.h"
#include "qlc/reports/report.h"

namespace qlc::reports {
namespace {

namespace fs = std::filesystem;

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

constexpr const char* kOkId =
    "cpu/nf4-dq/param=bf16/compute=bf16/optim=adamw8bit/amp=none/adapter=model/kbit=off/"
    "ckpt=off/stack=current/model=tiny";
constexpr const char* kFp16Id = "cpu/nf4/param=fp16/compute=fp16/optim=adamw-fp32";  // core id
constexpr const char* kSkipId =
    "cuda:0/int8/param=fp32/compute=fp32/optim=adamw-fp32/amp=none/adapter=model/kbit=off/"
    "ckpt=off/stack=current/model=tiny";
const std::string kMessage = "addmm, \"Half\" | not implemented\nsecond line";

class WritersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("qlc_reports_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    nlohmann::json ok = {{"case", kOkId},       {"outcome", "ok"},
                         {"losses", {2.5, 2.0}}, {"model", "tiny"},
                         {"lora_rank", 8},
                         {"timings", {{"step", {{"median_ms", 12.5}, {"p90_ms", 14.0}}},
                                      {"tokens_per_s", 5000.0}}},
                         {"memory", {{"peak_bytes", 2097152},
                                     {"base_weight_bits_per_param", 4.127},
                                     {"theory_bits_per_param", 4.127}}}};
    nlohmann::json failed = {
        {"case", kFp16Id},
        {"outcome", "unsupported_dtype"},
        {"phase", "forward"},
        {"message", kMessage},
        {"prediction",
         {{"outcome", "unsupported_dtype"}, {"rule", "fp16-cpu"}, {"why", "no fp16 GEMM"},
          {"fix", "compute in bf16"}}},
        {"fix_check", {{"rule", "fp16-cpu"}, {"case", "cpu/nf4/param=fp16/compute=bf16"},
                       {"outcome", "ok"}}}};
    nlohmann::json skipped = {{"case", kSkipId}, {"outcome", "skipped"},
                              {"skip_reason", "no GPU"}};
    write_text(dir_ / "records.jsonl",
               ok.dump() + "\n" + failed.dump() + "\n" + skipped.dump() + "\n");
    write_text(dir_ / "environment.json",
               R"({"id": "abc123", "facts": {"cpu": {"model": "Test CPU"},
                   "libtorch": {"version": "2.13.0"}, "qlora_compat": {"git_revision": "deadbee"}}})");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string render(const std::string& format) {
    RunData run = load_run(dir_.string());
    run.detect_by_rule["fp16-cpu"] = "try one fp16 matmul on the device";
    std::ostringstream out;
    make_writer(format)->write(run, out);
    return out.str();
  }

  fs::path dir_;
};

TEST(CsvField, QuotesPerRfc4180) {
  EXPECT_EQ(csv_field("plain"), "plain");
  EXPECT_EQ(csv_field("a,b"), "\"a,b\"");
  EXPECT_EQ(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(csv_field("two\nlines"), "\"two\nlines\"");
  EXPECT_EQ(csv_field(""), "");
}

TEST(Axes, FivePartAndFullIdsGiveTheSameAxisNames) {
  const auto core = axes_of(kFp16Id);
  const auto full = axes_of(kOkId);
  ASSERT_EQ(core.size(), full.size());
  for (size_t i = 0; i < core.size(); ++i) EXPECT_EQ(core[i].first, full[i].first);
  EXPECT_EQ(core[1], (std::pair<std::string, std::string>{"weights", "nf4"}));
  // An id the case model cannot read still has a column.
  EXPECT_EQ(axes_of("not an id").front().first, "case");
}

TEST_F(WritersTest, CsvHasOneRowPerCaseAndQuotesTheMessage) {
  const std::string csv = render("csv");
  // Header + 3 records, each ending in CRLF; the message's own newline is a bare LF in quotes.
  EXPECT_EQ(count(csv, "\r\n"), 4u);
  EXPECT_NE(csv.find(",\"addmm, \"\"Half\"\" | not implemented\nsecond line\","), std::string::npos)
      << csv;
  EXPECT_EQ(csv.rfind("case,device,weights,double_quant,param_dtype,compute_dtype,optimizer,amp", 0),
            0u) << csv;
  // The five-part id reads with the later axes at their defaults (amp none, model tiny).
  EXPECT_NE(csv.find(std::string(kFp16Id) + ",cpu,nf4,false,fp16,fp16,adamw-fp32,none,"),
            std::string::npos) << csv;
  EXPECT_NE(csv.find(",unsupported_dtype,forward,-1,unsupported_dtype,true,fp16-cpu,true,"),
            std::string::npos) << csv;
}

TEST_F(WritersTest, MarkdownTableHasOneMarkPerCase) {
  const std::string md = render("md");
  const size_t table = md.find("## Compatibility");
  const size_t legend = md.find("Legend:");
  ASSERT_NE(table, std::string::npos);
  ASSERT_NE(legend, std::string::npos);
  const std::string t = md.substr(table, legend - table);
  EXPECT_EQ(count(t, "✅") + count(t, "❌") + count(t, "⏭️"), 3u) << t;
  // Rows weights × compute dtype (nf4 with double quantization reads nf4+dq).
  EXPECT_NE(t.find("| nf4+dq · bf16 |"), std::string::npos) << t;
  EXPECT_NE(t.find("✅ 12.5 ms"), std::string::npos) << t;
  EXPECT_NE(t.find("❌ unsupported_dtype"), std::string::npos) << t;
  // Columns param dtype × optimizer.
  EXPECT_NE(t.find("bf16 · adamw8bit"), std::string::npos) << t;
  // As predicted: no misprediction mark.
  EXPECT_EQ(count(t, "❗"), 0u);
}

TEST_F(WritersTest, MarkdownHasHeaderFailureSectionAndTimings) {
  const std::string md = render("md");
  EXPECT_NE(md.find("| LibTorch | 2.13.0 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| git revision | deadbee |"), std::string::npos) << md;
  EXPECT_NE(md.find("3 cases; model tiny; LoRA rank 8; steps run, warm-up included (cases that worked) 2"), std::string::npos) << md;
  EXPECT_NE(md.find("### unsupported_dtype: fp16-cpu"), std::string::npos) << md;
  // The raw message as an indented block, both lines.
  EXPECT_NE(md.find("    addmm, \"Half\" | not implemented\n    second line\n"), std::string::npos);
  EXPECT_NE(md.find("**Why:** no fp16 GEMM"), std::string::npos);
  EXPECT_NE(md.find("**Detect before training:** try one fp16 matmul on the device"),
            std::string::npos);
  EXPECT_NE(md.find("**Fix:** compute in bf16"), std::string::npos);
  EXPECT_NE(md.find("**Fix verified here:** yes"), std::string::npos);
  EXPECT_NE(md.find("  - `" + std::string(kFp16Id) + "`"), std::string::npos);
  // Timings: the one working case; 2097152 bytes = 2.0 MiB.
  EXPECT_NE(md.find("| nf4+dq | 1 | 12.5 | 5000 | 2.0 | 4.127 (4.127) |"), std::string::npos)
      << md;
}

TEST_F(WritersTest, JsonIsVersionedWithEveryCaseAndItsAxes) {
  const nlohmann::json j = nlohmann::json::parse(render("json"));
  EXPECT_EQ(j["report_version"], 1);
  EXPECT_EQ(j["environment"]["id"], "abc123");
  ASSERT_EQ(j["cases"].size(), 3u);
  EXPECT_EQ(j["cases"][1]["axes"]["param_dtype"], "fp16");
  EXPECT_EQ(j["cases"][1]["message"], kMessage);
  EXPECT_EQ(j["cases"][1]["as_predicted"], true);
  EXPECT_EQ(j["cases"][2]["outcome"], "skipped");
}

TEST_F(WritersTest, WriteReportsWritesEachFormatAtomically) {
  const fs::path out = dir_ / "reports";
  const auto paths = write_reports(load_run(dir_.string()), {"md", "csv", "json"}, out.string());
  ASSERT_EQ(paths.size(), 3u);
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(out)) {
    ++files;
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
  }
  EXPECT_EQ(files, 3u);
  try {
    write_reports(load_run(dir_.string()), {"md", "pdf"}, out.string());
    FAIL() << "pdf accepted";
  } catch (const ReportError& e) {
    EXPECT_NE(std::string(e.what()).find("'pdf' (expected md, csv, json, junit, html or all)"), std::string::npos);
  }
}

TEST_F(WritersTest, EmptyRunIsWellFormed) {
  write_text(dir_ / "records.jsonl", "");
  EXPECT_NE(render("md").find("No case has a record"), std::string::npos);
  EXPECT_EQ(count(render("csv"), "\r\n"), 1u);  // the header only
  EXPECT_TRUE(nlohmann::json::parse(render("json"))["cases"].empty());
  EXPECT_NE(render("junit").find("tests=\"0\" failures=\"0\" errors=\"0\" skipped=\"0\""),
            std::string::npos);
  EXPECT_NE(render("html").find("\"cases\": [\n]"), std::string::npos);
}

TEST(Formats, AllStandsForEveryFormatAndBadNamesAreRefused) {
  EXPECT_EQ(parse_formats("all"),
            (std::vector<std::string>{"md", "csv", "json", "junit", "html"}));
  EXPECT_EQ(parse_formats("junit,,html,junit"), (std::vector<std::string>{"junit", "html"}));
  EXPECT_EQ(parse_formats("html,all").front(), "html");
  EXPECT_TRUE(parse_formats("").empty());
  EXPECT_THROW(parse_formats("md,xml"), ReportError);
}

TEST_F(WritersTest, JunitCountsFollowThePredictions) {
  // The three records: ok as predicted (no prediction: expected ok), fp16 failure as predicted,
  // skipped: no failure, no error, one skipped; classname = weight format.
  const std::string xml = render("junit");
  EXPECT_NE(xml.find("<testsuites name=\"qlora-compat\" tests=\"3\" failures=\"0\" errors=\"0\" "
                     "skipped=\"1\""),
            std::string::npos) << xml;
  EXPECT_NE(xml.find("classname=\"nf4+dq\""), std::string::npos);
  EXPECT_NE(xml.find("<skipped message=\"no GPU\""), std::string::npos);
  // An expected failure passes and keeps its message, escaped by the XML library.
  EXPECT_NE(xml.find("<system-out>addmm, \"Half\" | not implemented\nsecond line</system-out>"),
            std::string::npos) << xml;
}

TEST_F(WritersTest, JunitFailureNamesPredictionObservationAndRule) {
  nlohmann::json wrong = {{"case", kFp16Id}, {"outcome", "nan_loss"},
                          {"message", "loss <nan> & \x01 gone"},
                          {"prediction", {{"outcome", "ok"}, {"rule", "r1"}}}};
  write_text(dir_ / "records.jsonl", wrong.dump() + "\n");
  const std::string xml = render("junit");
  EXPECT_NE(xml.find("failures=\"1\""), std::string::npos) << xml;
  EXPECT_NE(xml.find("message=\"predicted ok (rule r1), observed nan_loss: loss &lt;nan> &amp; "
                     "\xEF\xBF\xBD gone\" type=\"nan_loss\""),
            std::string::npos) << xml;
  EXPECT_NE(xml.find("predicted: ok (rule r1)\nobserved: nan_loss"), std::string::npos) << xml;
  EXPECT_EQ(xml.find('\x01'), std::string::npos);  // not allowed in XML 1.0, even escaped
}

TEST_F(WritersTest, HtmlIsSelfContainedAndNoMessageEndsItsScript) {
  nlohmann::json evil = {{"case", kFp16Id}, {"outcome", "crash"},
                         {"message", "</script><script>alert(1)</script> <!-- & \"q\""}};
  write_text(dir_ / "records.jsonl", evil.dump() + "\n");
  const std::string html = render("html");
  // Two script elements (data, code), whatever the message says; nothing loaded from elsewhere.
  EXPECT_EQ(count(html, "<script"), 2u);
  EXPECT_EQ(count(html, "</script>"), 2u);
  EXPECT_NE(html.find("\\u003c/script>\\u003cscript>alert(1)"), std::string::npos);
  // The one URL is SVG's namespace name, which is never fetched.
  EXPECT_EQ(count(html, "http:"), count(html, "'http://www.w3.org/2000/svg'"));
  EXPECT_EQ(count(html, "https:"), 0u);
  EXPECT_EQ(html.find("src="), std::string::npos);
}

TEST_F(WritersTest, BadRunFolderNamesFileAndLine) {
  EXPECT_THROW(load_run((dir_ / "missing").string()), ReportError);
  write_text(dir_ / "records.jsonl", "{\"case\": \"x\", \"outcome\": \"ok\"}\n{oops\n{}\n");
  try {
    load_run(dir_.string());
    FAIL() << "malformed line accepted";
  } catch (const ReportError& e) {
    EXPECT_NE(std::string(e.what()).find("records.jsonl:2:"), std::string::npos) << e.what();
  }
  fs::remove(dir_ / "records.jsonl");
  try {
    load_run(dir_.string());
    FAIL() << "folder without records accepted";
  } catch (const ReportError& e) {
    EXPECT_NE(std::string(e.what()).find("records.jsonl: missing"), std::string::npos);
  }
}

}  // namespace
}  // namespace qlc::reports
