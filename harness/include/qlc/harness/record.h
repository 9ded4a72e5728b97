// One case's result, written as one JSON line the moment the case ends, so that an interrupted
// run loses nothing and `--resume` knows what is done.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qlc/harness/case.h"
#include "qlc/harness/outcome.h"

namespace qlc::harness {

struct Percentiles {
  double median_ms = 0.0;
  double p90_ms = 0.0;
};

// What cases/rules.yaml predicted for the case (absent when the run had no rules).
struct Prediction {
  Outcome outcome = Outcome::kOk;
  std::string rule;  // the id of the rule that made it
  std::string why;   // the rule's cause, and its fix as a sentence (empty: no fix)
  std::string fix;
};

// The rule's fix, applied and run on this machine: was the failure fixed?
struct FixCheck {
  std::string rule;
  std::string case_id;          // the case with the fix applied
  Outcome outcome = Outcome::kOk;
  std::string message;          // its message, when it failed too
  bool verified() const { return outcome == Outcome::kOk; }  // "fix verified" / "fix failed"
};

struct Record {
  std::string case_id;
  Outcome outcome = Outcome::kHarnessError;
  Phase phase = Phase::kNone;
  std::string message;          // first lines of the raw error message (empty when ok)
  std::string skip_reason;      // for kSkipped
  int step = -1;                // step at which it failed (-1: before the first step)
  std::vector<double> losses;   // fp32 loss of every step run
  // Timings (milliseconds) and throughput.
  double load_ms = 0.0;         // checkpoint read + quantization + model build
  Percentiles forward, backward, optimizer, step_time;  // over timed steps after warm-up
  double tokens_per_s = 0.0;
  int64_t peak_memory_bytes = 0;       // device allocator peak on CUDA, peak RSS on CPU
  double base_weight_bits_per_param = 0.0;    // measured storage of the frozen linear weights
  double theory_bits_per_param = 0.0;         // 4.127 NF4+DQ, 4.5 NF4, 8 + row scales int8, 16/32
  double wall_ms = 0.0;         // whole case including the worker's start
  double overhead_ms = 0.0;     // wall_ms minus the training steps: spawn, build, checkpoint, load
  // How the timings were taken: cases at a time (--jobs) and LibTorch threads per worker (0:
  // unknown, e.g. an older record); `timings_shared`: another case ran at some moment during this
  // one, so its times shared the machine; `timings_serial`: taken by --serial-timings' pass with
  // nothing else running (the outcome is the parallel pass's).
  int jobs = 0;
  int threads = 0;
  bool timings_shared = false;
  bool timings_serial = false;
  // Worker process facts (isolated runs).
  int exit_code = 0;
  int signal = 0;
  std::string worker_output;    // last lines of the worker's stderr when it died
  std::string environment_id;   // key into the run's environment record
  std::string model;            // RunSettings::model
  int lora_rank = 0;
  std::optional<Prediction> prediction;
  std::optional<FixCheck> fix_check;

  // Observation equals prediction (false without a prediction).
  bool as_predicted() const { return prediction && prediction->outcome == outcome; }

  nlohmann::json to_json() const;
  static Record from_json(const nlohmann::json& j);  // throws std::invalid_argument on bad input
};

// JSON layout of one record (one line; keys of absent values may be left out by other writers,
// e.g. a Python peer, and read back as the defaults above; unknown keys are ignored):
//   {"schema": 1, "case": ID, "outcome": "ok", "phase": "none", "step": -1, "message": "",
//    "skip_reason": "", "losses": [..],
//    "timings": {"load_ms", "forward": {"median_ms", "p90_ms"}, "backward": {..},
//                "optimizer": {..}, "step": {..}, "tokens_per_s", "wall_ms", "overhead_ms",
//                "shared": false, "serial": false},   (shared, serial: only with "parallel")
//    "parallel": {"jobs", "threads"},                   (absent in older records: unknown)
//    "memory": {"peak_bytes", "base_weight_bits_per_param", "theory_bits_per_param"},
//    "worker": {"exit_code", "signal", "output"},
//    "environment": ENV_ID, "model": "tiny", "lora_rank": 8,
//    "prediction": {"outcome", "rule", "why", "fix"},                  (when rules were given)
//    "fix_check": {"rule", "case", "outcome", "verified", "message"}}  (when a fix was run)
// "case" and "outcome" are required. JSON has no NaN/Inf: a non-finite number (a nan_loss case's
// losses) is written as the string "nan", "inf" or "-inf"; null reads as NaN.

// Errors reading a records file; the message names the file and the line.
class RecordError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Appends one record as a line and flushes it to disk (fsync) before returning. Text that is not
// valid UTF-8 (raw worker output) is written with U+FFFD in its place. One writer per file: if
// the file ends in a line cut short by a crash, that fragment is removed first, so the resumed
// run does not glue its record onto it. Throws std::runtime_error naming the file on I/O errors.
void append_record(const std::string& path, const Record& record);

// Reads a records file. A last line cut short by a crash (no final newline, not valid JSON) is
// ignored (and reported through `truncated_tail` when given); any other malformed line is a
// RecordError naming file and line. Blank lines are skipped. A missing file is a RecordError.
std::vector<Record> read_records(const std::string& path, bool* truncated_tail = nullptr);
// The same for a file's text in memory; `path` only names it in errors (the fuzz target).
std::vector<Record> parse_records(const std::string& text, const std::string& path,
                                  bool* truncated_tail = nullptr);

}  // namespace qlc::harness
