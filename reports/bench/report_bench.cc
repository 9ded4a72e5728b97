// Writing the reports of a large run: 10,000 synthetic cases (full ids walked over every axis's
// values, a mix of outcomes, messages that need escaping, 10 losses, predictions, fix checks),
// each format into memory, and all five through write_reports (files, temp + rename). Goal:
// every format for 10,000 cases in under 1 s on one core (run it pinned: taskset -c 0).
#include <unistd.h>

#include <filesystem>
#include <sstream>

#include <benchmark/benchmark.h>

#include "qlc/harness/case.h"
#include "qlc/reports/report.h"

namespace qlc::reports {
namespace {

using harness::Outcome;

// The first n valid cases of the axes' product (device cpu), first axis varying fastest.
std::vector<std::string> synthetic_ids(size_t n) {
  const auto& axes = harness::case_axes();
  std::vector<std::string> ids;
  for (size_t i = 0; ids.size() < n; ++i) {
    harness::Case c;
    c.device = "cpu";
    size_t rest = i;
    try {
      for (const auto& axis : axes) {
        if (axis.name == "device") continue;
        harness::set_axis(c, axis.name, axis.values[rest % axis.values.size()]);
        rest /= axis.values.size();
      }
      ids.push_back(c.id());
    } catch (const std::invalid_argument&) {
      // an invalid combination (double quantization of int8): not a case
    }
  }
  return ids;
}

RunData synthetic_run(size_t n) {
  RunData run;
  run.dir = "synthetic";
  run.environment = {{"id", "bench"},
                     {"facts", {{"cpu", {{"model", "Synthetic CPU"}}},
                                {"libtorch", {{"version", "2.13.0"}}}}}};
  const Outcome outcomes[] = {Outcome::kOk, Outcome::kOk, Outcome::kOk, Outcome::kDtypeMismatch,
                              Outcome::kUnsupportedDtype, Outcome::kNanLoss, Outcome::kSkipped,
                              Outcome::kCrash};
  size_t i = 0;
  for (const std::string& id : synthetic_ids(n)) {
    harness::Record r;
    r.case_id = id;
    r.outcome = outcomes[i % 8];
    r.environment_id = "bench";
    r.model = "tiny";
    r.lora_rank = 8;
    r.wall_ms = 500.0 + static_cast<double>(i % 97);
    if (r.outcome == Outcome::kOk) {
      for (int s = 0; s < 10; ++s) r.losses.push_back(3.0 - 0.1 * s);
      r.step_time = {10.0 + static_cast<double>(i % 13), 12.0 + static_cast<double>(i % 13)};
      r.forward = r.backward = r.optimizer = {3.0, 4.0};
      r.tokens_per_s = 4000.0;
      r.peak_memory_bytes = 100000000 + static_cast<int64_t>(i);
      r.base_weight_bits_per_param = 4.127;
      r.theory_bits_per_param = 4.127;
    } else if (r.outcome == Outcome::kSkipped) {
      r.skip_reason = "no GPU";
    } else {
      r.phase = harness::Phase::kForward;
      r.step = 0;
      r.message = "expected mat1 and mat2 to have the same dtype, but got: \"float\" != \"c10::Half\""
                  "\n<trace> & more, case " + std::to_string(i % 5);
    }
    r.prediction = harness::Prediction{i % 50 == 7 ? Outcome::kOk : r.outcome, "rule-" +
                                       std::to_string(i % 5), "why it happens", "the fix"};
    if (r.outcome != Outcome::kOk && r.outcome != Outcome::kSkipped) {
      r.fix_check = harness::FixCheck{"rule-" + std::to_string(i % 5), id + "-fixed", Outcome::kOk, ""};
    }
    run.records.push_back(std::move(r));
    ++i;
  }
  return run;
}

const RunData& run10k() {
  static const RunData run = synthetic_run(10000);
  return run;
}

void BM_Format(benchmark::State& state, const std::string& format) {
  const RunData& run = run10k();
  const auto writer = make_writer(format);
  size_t bytes = 0;
  for (auto _ : state) {
    std::ostringstream out;
    writer->write(run, out);
    bytes = out.str().size();
    benchmark::DoNotOptimize(bytes);
  }
  state.counters["cases"] = static_cast<double>(run.records.size());
  state.counters["MB"] = static_cast<double>(bytes) / 1e6;
}
BENCHMARK_CAPTURE(BM_Format, md, std::string("md"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Format, csv, std::string("csv"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Format, json, std::string("json"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Format, junit, std::string("junit"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Format, html, std::string("html"))->Unit(benchmark::kMillisecond);

// The goal's figure: every format written as files, as `qlora-compat report --format all` does.
void BM_AllFormatsToFiles(benchmark::State& state) {
  const RunData& run = run10k();
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("qlc_report_bench_" + std::to_string(::getpid()));
  for (auto _ : state) {
    benchmark::DoNotOptimize(write_reports(run, available_formats(), dir.string()));
  }
  std::filesystem::remove_all(dir);
  state.counters["cases"] = static_cast<double>(run.records.size());
}
BENCHMARK(BM_AllFormatsToFiles)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace qlc::reports
