// Records: the JSON schema, the round trip, and the records file an interrupted run resumes from.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#include "qlc/harness/record.h"

namespace qlc::harness {
namespace {

namespace fs = std::filesystem;

// A record with every field away from its default, so a field dropped on either side shows.
Record full_record(const std::string& case_id) {
  Record r;
  r.case_id = case_id;
  r.outcome = Outcome::kDtypeMismatch;
  r.phase = Phase::kForward;
  r.message = "expected mat1 and mat2 to have the same dtype\nsecond line";
  r.skip_reason = "not skipped, but set";
  r.step = 3;
  r.losses = {4.25, 3.5, 3.125};
  r.load_ms = 12.5;
  r.forward = {1.25, 1.5};
  r.backward = {2.25, 2.5};
  r.optimizer = {0.25, 0.375};
  r.step_time = {3.75, 4.5};
  r.tokens_per_s = 10240.0;
  r.peak_memory_bytes = int64_t{5} << 32;  // beyond 32 bits on purpose
  r.base_weight_bits_per_param = 4.127;
  r.theory_bits_per_param = 4.127;
  r.wall_ms = 900.5;
  r.overhead_ms = 880.25;
  r.jobs = 2;
  r.threads = 3;
  r.timings_shared = true;
  r.timings_serial = true;
  r.exit_code = 0;
  r.signal = 11;
  r.worker_output = "tail of stderr";
  r.environment_id = "env-1f2e3d";
  r.model = "tiny";
  r.lora_rank = 8;
  return r;
}

// Field by field (no operator== on Record: these are the expectations).
void expect_same(const Record& a, const Record& b) {
  EXPECT_EQ(a.case_id, b.case_id);
  EXPECT_EQ(a.outcome, b.outcome);
  EXPECT_EQ(a.phase, b.phase);
  EXPECT_EQ(a.message, b.message);
  EXPECT_EQ(a.skip_reason, b.skip_reason);
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.losses, b.losses);
  EXPECT_EQ(a.load_ms, b.load_ms);
  for (auto [x, y] : {std::pair{a.forward, b.forward}, std::pair{a.backward, b.backward},
                      std::pair{a.optimizer, b.optimizer}, std::pair{a.step_time, b.step_time}}) {
    EXPECT_EQ(x.median_ms, y.median_ms);
    EXPECT_EQ(x.p90_ms, y.p90_ms);
  }
  EXPECT_EQ(a.tokens_per_s, b.tokens_per_s);
  EXPECT_EQ(a.peak_memory_bytes, b.peak_memory_bytes);
  EXPECT_EQ(a.base_weight_bits_per_param, b.base_weight_bits_per_param);
  EXPECT_EQ(a.theory_bits_per_param, b.theory_bits_per_param);
  EXPECT_EQ(a.wall_ms, b.wall_ms);
  EXPECT_EQ(a.overhead_ms, b.overhead_ms);
  EXPECT_EQ(a.jobs, b.jobs);
  EXPECT_EQ(a.threads, b.threads);
  EXPECT_EQ(a.timings_shared, b.timings_shared);
  EXPECT_EQ(a.timings_serial, b.timings_serial);
  EXPECT_EQ(a.exit_code, b.exit_code);
  EXPECT_EQ(a.signal, b.signal);
  EXPECT_EQ(a.worker_output, b.worker_output);
  EXPECT_EQ(a.environment_id, b.environment_id);
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.lora_rank, b.lora_rank);
}

std::string invalid_argument_message(const nlohmann::json& j) {
  try {
    Record::from_json(j);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

class RecordsFile : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           ("qlc_records_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = (dir_ / "records.jsonl").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  void append_raw(const std::string& text) {
    std::ofstream out(path_, std::ios::binary | std::ios::app);
    out << text;
  }
  std::string contents() const {
    std::ifstream in(path_, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::string error_reading() const {
    try {
      read_records(path_);
    } catch (const RecordError& e) {
      return e.what();
    }
    return "";
  }

  fs::path dir_;
  std::string path_;
};

TEST(RecordJson, RoundTripsEveryField) {
  const Record r = full_record("cpu/nf4-dq/param=bf16/compute=bf16/optim=adamw8bit");
  expect_same(Record::from_json(r.to_json()), r);
  // Through text, as in the file.
  expect_same(Record::from_json(nlohmann::json::parse(r.to_json().dump())), r);
}

TEST(RecordJson, PredictionAndFixCheckRoundTrip) {
  Record r = full_record("cpu/none/param=fp16/compute=fp32/optim=adamw-param");
  r.outcome = Outcome::kNanLoss;
  r.prediction = Prediction{Outcome::kNanLoss, "fp16-adam-states-eps-underflow", "eps is 0", "fp32 states"};
  r.fix_check = FixCheck{"fp16-adam-states-eps-underflow", "cpu/none/param=fp16/compute=fp32/optim=adamw-fp32",
                         Outcome::kOk, ""};
  const Record back = Record::from_json(nlohmann::json::parse(r.to_json().dump()));
  ASSERT_TRUE(back.prediction && back.fix_check);
  EXPECT_EQ(back.prediction->outcome, Outcome::kNanLoss);
  EXPECT_EQ(back.prediction->rule, r.prediction->rule);
  EXPECT_EQ(back.prediction->why, "eps is 0");
  EXPECT_EQ(back.prediction->fix, "fp32 states");
  EXPECT_TRUE(back.as_predicted());
  EXPECT_EQ(back.fix_check->case_id, r.fix_check->case_id);
  EXPECT_TRUE(back.fix_check->verified());
  EXPECT_TRUE(r.to_json().at("fix_check").at("verified").get<bool>());
  // Absent without rules; a prediction must name a valid outcome.
  EXPECT_FALSE(Record::from_json(full_record("c").to_json()).prediction.has_value());
  EXPECT_FALSE(full_record("c").as_predicted());
  nlohmann::json bad = r.to_json();
  bad["prediction"]["outcome"] = "fine";
  EXPECT_NE(invalid_argument_message(bad).find("prediction.outcome"), std::string::npos);
}

TEST(RecordJson, EveryOutcomeAndPhaseRoundTrips) {
  for (Outcome o : kAllOutcomes) {
    for (Phase p : kAllPhases) {
      Record r;
      r.case_id = "cpu/int8/param=fp16/compute=fp16/optim=adamw-param";
      r.outcome = o;
      r.phase = p;
      const Record back = Record::from_json(r.to_json());
      EXPECT_EQ(back.outcome, o);
      EXPECT_EQ(back.phase, p);
    }
  }
}

// The layout record.h documents: other tools (reports, the Python peer) read and write it.
TEST(RecordJson, LayoutIsTheDocumentedOne) {
  const nlohmann::json j =
      full_record("cpu/fp4/param=fp32/compute=fp32/optim=adamw-fp32").to_json();
  EXPECT_EQ(j.at("schema"), 1);
  EXPECT_EQ(j.at("case"), "cpu/fp4/param=fp32/compute=fp32/optim=adamw-fp32");
  EXPECT_EQ(j.at("outcome"), "dtype_mismatch");
  EXPECT_EQ(j.at("phase"), "forward");
  EXPECT_EQ(j.at("step"), 3);
  EXPECT_EQ(j.at("losses"), nlohmann::json::array({4.25, 3.5, 3.125}));
  EXPECT_EQ(j.at("timings").at("load_ms"), 12.5);
  EXPECT_EQ(j.at("timings").at("forward").at("median_ms"), 1.25);
  EXPECT_EQ(j.at("timings").at("step").at("p90_ms"), 4.5);
  EXPECT_EQ(j.at("timings").at("tokens_per_s"), 10240.0);
  EXPECT_EQ(j.at("memory").at("peak_bytes"), int64_t{21474836480});  // 5 * 2^32
  EXPECT_EQ(j.at("memory").at("theory_bits_per_param"), 4.127);
  EXPECT_EQ(j.at("worker").at("signal"), 11);
  EXPECT_EQ(j.at("timings").at("shared"), true);
  EXPECT_EQ(j.at("timings").at("serial"), true);
  EXPECT_EQ(j.at("parallel"), nlohmann::json({{"jobs", 2}, {"threads", 3}}));
  EXPECT_EQ(j.at("worker").at("output"), "tail of stderr");
  EXPECT_EQ(j.at("environment"), "env-1f2e3d");
  EXPECT_EQ(j.at("model"), "tiny");
  EXPECT_EQ(j.at("lora_rank"), 8);
}

// A nan_loss case has NaN losses; JSON has no NaN.
TEST(RecordJson, NonFiniteNumbersSurvive) {
  Record r;
  r.case_id = "cpu/nf4/param=fp16/compute=fp16/optim=adamw-fp32";
  r.outcome = Outcome::kNanLoss;
  r.losses = {2.0, std::numeric_limits<double>::infinity(), std::nan(""),
              -std::numeric_limits<double>::infinity()};
  const nlohmann::json j = r.to_json();
  EXPECT_EQ(j.at("losses"), nlohmann::json::parse(R"([2.0, "inf", "nan", "-inf"])"));
  const Record back = Record::from_json(nlohmann::json::parse(j.dump()));
  ASSERT_EQ(back.losses.size(), 4u);
  EXPECT_EQ(back.losses[0], 2.0);
  EXPECT_TRUE(std::isinf(back.losses[1]) && back.losses[1] > 0);
  EXPECT_TRUE(std::isnan(back.losses[2]));
  EXPECT_TRUE(std::isinf(back.losses[3]) && back.losses[3] < 0);
  // Other writers' spellings: null, and Python/JavaScript's names.
  const Record other = Record::from_json(nlohmann::json::parse(
      R"({"case": "c", "outcome": "nan_loss", "losses": [null, "NaN", "Infinity", "-Infinity"]})"));
  EXPECT_TRUE(std::isnan(other.losses[0]));
  EXPECT_TRUE(std::isnan(other.losses[1]));
  EXPECT_EQ(other.losses[2], std::numeric_limits<double>::infinity());
  EXPECT_EQ(other.losses[3], -std::numeric_limits<double>::infinity());
}

TEST(RecordJson, MinimalRecordTakesDefaults) {
  const Record r = Record::from_json(nlohmann::json::parse(
      R"({"case": "cpu/none/param=fp32/compute=fp32/optim=adamw-fp32", "outcome": "ok",
          "timings": {"forward": {"median_ms": 2.5}}, "future_field": [1, 2]})"));
  EXPECT_EQ(r.outcome, Outcome::kOk);
  EXPECT_EQ(r.phase, Phase::kNone);
  EXPECT_EQ(r.step, -1);
  EXPECT_TRUE(r.losses.empty());
  EXPECT_EQ(r.forward.median_ms, 2.5);
  EXPECT_EQ(r.forward.p90_ms, 0.0);
  EXPECT_EQ(r.peak_memory_bytes, 0);
}

// A record from before the run said how it took its timings must not gain "shared": false when it
// is written again (merge rewrites docs/runs): unknown stays unknown.
TEST(RecordJson, OlderRecordWithoutParallelStaysSilentAboutSharing) {
  const Record r = Record::from_json(nlohmann::json::parse(
      R"({"case": "cpu/none/param=fp32/compute=fp32/optim=adamw-fp32", "outcome": "ok",
          "timings": {"wall_ms": 10.0}})"));
  EXPECT_EQ(r.jobs, 0);
  const nlohmann::json j = r.to_json();
  EXPECT_FALSE(j.contains("parallel"));
  EXPECT_FALSE(j.at("timings").contains("shared"));
  EXPECT_FALSE(j.at("timings").contains("serial"));
}

TEST(RecordJson, RejectsBadInputNamingTheField) {
  using nlohmann::json;
  EXPECT_NE(invalid_argument_message(json::array()).find("expected a JSON object"),
            std::string::npos);
  EXPECT_NE(invalid_argument_message(json{{"outcome", "ok"}}).find("'case' is missing"),
            std::string::npos);
  EXPECT_NE(invalid_argument_message(json{{"case", "c"}}).find("'outcome' is missing"),
            std::string::npos);
  EXPECT_NE(invalid_argument_message(json{{"case", ""}, {"outcome", "ok"}}).find("'case'"),
            std::string::npos);
  const std::string outcome = invalid_argument_message(json{{"case", "c"}, {"outcome", "passed"}});
  EXPECT_NE(outcome.find("'passed'"), std::string::npos) << outcome;
  EXPECT_NE(outcome.find("harness_error"), std::string::npos) << outcome;
  const std::string phase =
      invalid_argument_message(json{{"case", "c"}, {"outcome", "ok"}, {"phase", "step"}});
  EXPECT_NE(phase.find("'step'"), std::string::npos) << phase;
  const std::string type = invalid_argument_message(
      json{{"case", "c"}, {"outcome", "ok"}, {"timings", {{"forward", {{"p90_ms", "fast"}}}}}});
  EXPECT_NE(type.find("'timings.forward.p90_ms'"), std::string::npos) << type;
  const std::string integer =
      invalid_argument_message(json{{"case", "c"}, {"outcome", "ok"}, {"step", 1.5}});
  EXPECT_NE(integer.find("'step'"), std::string::npos) << integer;
  const std::string range =
      invalid_argument_message(json{{"case", "c"}, {"outcome", "ok"}, {"lora_rank", 1ll << 40}});
  EXPECT_NE(range.find("'lora_rank'"), std::string::npos) << range;
  const std::string losses =
      invalid_argument_message(json{{"case", "c"}, {"outcome", "ok"}, {"losses", {1.0, "x"}}});
  EXPECT_NE(losses.find("'losses[1]'"), std::string::npos) << losses;
  const std::string schema =
      invalid_argument_message(json{{"schema", 2}, {"case", "c"}, {"outcome", "ok"}});
  EXPECT_NE(schema.find("'schema'"), std::string::npos) << schema;
}

TEST_F(RecordsFile, AppendedRecordsReadBackInOrderOneLineEach) {
  const Record a = full_record("cpu/nf4/param=fp32/compute=fp32/optim=adamw-fp32");
  Record b = full_record("cpu/nf4-dq/param=bf16/compute=bf16/optim=adamw8bit");
  b.outcome = Outcome::kOk;
  Record c = full_record("cpu/int8/param=fp16/compute=fp16/optim=adamw-param");
  c.outcome = Outcome::kCrash;
  append_record(path_, a);
  append_record(path_, b);
  append_record(path_, c);

  const std::string text = contents();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3);
  EXPECT_EQ(text.back(), '\n');

  bool truncated = true;
  const auto records = read_records(path_, &truncated);
  EXPECT_FALSE(truncated);
  ASSERT_EQ(records.size(), 3u);
  expect_same(records[0], a);
  expect_same(records[1], b);
  expect_same(records[2], c);
}

TEST_F(RecordsFile, TruncatedLastLineIsIgnoredAndReported) {
  const Record a = full_record("cpu/nf4/param=fp32/compute=fp32/optim=adamw-fp32");
  append_record(path_, a);
  append_record(path_, a);
  // A crash in the middle of writing the third record: a prefix of its line, no newline.
  const std::string third = a.to_json().dump();
  append_raw(third.substr(0, third.size() / 2));

  bool truncated = false;
  EXPECT_EQ(read_records(path_, &truncated).size(), 2u);
  EXPECT_TRUE(truncated);
  EXPECT_EQ(read_records(path_).size(), 2u);  // the report is optional
}

TEST_F(RecordsFile, AppendAfterACrashRemovesTheFragmentFirst) {
  const Record a = full_record("cpu/nf4/param=fp32/compute=fp32/optim=adamw-fp32");
  append_record(path_, a);
  append_raw("{\"case\": \"cpu/fp4/par");
  const Record b = full_record("cpu/fp4/param=fp32/compute=fp32/optim=adamw-fp32");
  append_record(path_, b);  // the resumed run

  bool truncated = true;
  const auto records = read_records(path_, &truncated);
  EXPECT_FALSE(truncated);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1].case_id, b.case_id);
  EXPECT_EQ(contents().find("cpu/fp4/par\""), std::string::npos);
}

TEST_F(RecordsFile, CompleteLastLineMissingOnlyItsNewlineIsKept) {
  const Record a = full_record("cpu/nf4/param=fp32/compute=fp32/optim=adamw-fp32");
  append_record(path_, a);
  append_raw(full_record("cpu/fp4/param=fp32/compute=fp32/optim=adamw-fp32").to_json().dump());
  bool truncated = true;
  EXPECT_EQ(read_records(path_, &truncated).size(), 2u);
  EXPECT_FALSE(truncated);
  append_record(path_, a);  // must not glue onto the unterminated line
  EXPECT_EQ(read_records(path_).size(), 3u);
}

TEST_F(RecordsFile, MalformedMiddleLineIsAnErrorNamingTheLine) {
  const Record a = full_record("cpu/nf4/param=fp32/compute=fp32/optim=adamw-fp32");
  append_record(path_, a);
  append_raw("{\"case\": \"cpu/fp4/par\n");  // damaged line 2, with a newline: not a crash tail
  append_record(path_, a);
  const std::string e = error_reading();
  EXPECT_EQ(e.rfind(path_ + ":2: malformed record", 0), 0u) << e;
}

TEST_F(RecordsFile, MalformedLastLineWithNewlineIsAnError) {
  append_record(path_, full_record("cpu/nf4/param=fp32/compute=fp32/optim=adamw-fp32"));
  append_raw("not json\n");
  EXPECT_EQ(error_reading().rfind(path_ + ":2: malformed record", 0), 0u) << error_reading();
}

// nlohmann::json throws out_of_range, not parse_error, for a number beyond a double: it escaped
// the reader with neither file nor line.
TEST_F(RecordsFile, NumberBeyondADoubleIsAnErrorNamingTheLine) {
  append_record(path_, full_record("cpu/nf4/param=fp32/compute=fp32/optim=adamw-fp32"));
  append_raw("{\"case\": \"c\", \"outcome\": \"ok\", \"wall_ms\": 1e400}\n");
  const std::string e = error_reading();
  EXPECT_EQ(e.rfind(path_ + ":2: malformed record", 0), 0u) << e;
}

// A crash can cut the last line anywhere, also just after "1e400" of a longer number: the
// fragment is cut short like any other, and the next append removes it.
TEST_F(RecordsFile, CutShortLastLineWithAnOverflowingNumberIsCutShort) {
  const Record a = full_record("cpu/nf4/param=fp32/compute=fp32/optim=adamw-fp32");
  append_record(path_, a);
  append_raw("{\"case\": \"c\", \"outcome\": \"ok\", \"wall_ms\": 1e400");
  bool truncated = false;
  EXPECT_EQ(read_records(path_, &truncated).size(), 1u);
  EXPECT_TRUE(truncated);
  append_record(path_, a);
  EXPECT_EQ(read_records(path_, &truncated).size(), 2u);
  EXPECT_FALSE(truncated);
}

TEST_F(RecordsFile, ValidJsonThatIsNoRecordIsAnErrorNamingTheLine) {
  append_raw("\n");  // blank lines are skipped but counted
  append_raw("{\"case\": \"c\", \"outcome\": \"maybe\"}\n");
  const std::string e = error_reading();
  EXPECT_EQ(e.rfind(path_ + ":2: bad record: ", 0), 0u) << e;
  EXPECT_NE(e.find("'maybe'"), std::string::npos) << e;
}

TEST_F(RecordsFile, InvalidUtf8InWorkerOutputIsWrittenAnyway) {
  Record r = full_record("cpu/nf4/param=fp32/compute=fp32/optim=adamw-fp32");
  r.worker_output = std::string("bad \xff\xfe bytes");
  ASSERT_NO_THROW(append_record(path_, r));
  const auto records = read_records(path_);
  ASSERT_EQ(records.size(), 1u);
  // Each invalid byte becomes U+FFFD (EF BF BD in UTF-8).
  EXPECT_EQ(records[0].worker_output, "bad \xEF\xBF\xBD\xEF\xBF\xBD bytes");
}

TEST_F(RecordsFile, EmptyFileHasNoRecords) {
  append_raw("");
  bool truncated = true;
  EXPECT_TRUE(read_records(path_, &truncated).empty());
  EXPECT_FALSE(truncated);
}

TEST_F(RecordsFile, MissingFileIsAnErrorNamingIt) {
  const std::string missing = (dir_ / "none.jsonl").string();
  try {
    read_records(missing);
    FAIL() << "read a missing file";
  } catch (const RecordError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(missing + ": cannot read records file", 0), 0u);
  }
  const std::string in_missing_dir = (dir_ / "no" / "such" / "dir.jsonl").string();
  EXPECT_THROW(append_record(in_missing_dir, full_record("c")), std::runtime_error);
}

}  // namespace
}  // namespace qlc::harness
