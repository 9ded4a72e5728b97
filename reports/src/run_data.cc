// Reading a run folder, the case axes, the writer registry and the multiplexer.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <unordered_map>
#include <vector>

#include "atomic_file.h"
#include "qlc/harness/case.h"
#include "qlc/reports/report.h"

namespace qlc::reports {

namespace fs = std::filesystem;

RunData load_run(const std::string& dir) {
  if (!fs::is_directory(dir)) {
    throw ReportError(dir + ": not a run folder (no such directory)");
  }
  RunData run;
  run.dir = dir;
  const fs::path records = fs::path(dir) / "records.jsonl";
  if (!fs::exists(records)) {
    throw ReportError(records.string() +
                      ": missing (expected the records of a `qlora-compat run` or `collect`)");
  }
  try {
    run.records = harness::read_records(records.string(), &run.truncated_tail);
  } catch (const std::exception& e) {  // RecordError: names the file and the line already
    throw ReportError(e.what());
  }
  // A case recorded twice (run again by --resume after a machine_fault, or timed again by
  // --serial-timings): its last record counts, in the place of its first.
  std::map<std::string, size_t> first;
  std::vector<harness::Record> latest;
  for (auto& r : run.records) {
    auto [it, added] = first.emplace(r.case_id, latest.size());
    if (added) {
      latest.push_back(std::move(r));
    } else {
      latest[it->second] = std::move(r);
    }
  }
  run.records = std::move(latest);
  const fs::path env = fs::path(dir) / "environment.json";
  if (fs::exists(env)) {
    std::ifstream in(env);
    try {
      run.environment = nlohmann::json::parse(in);
    } catch (const nlohmann::json::parse_error& e) {
      throw ReportError(env.string() + ": not valid JSON (byte " + std::to_string(e.byte) + ")");
    }
    if (!run.environment.is_object()) {
      throw ReportError(env.string() + ": expected a JSON object with \"id\" and \"facts\"");
    }
  }
  return run;
}

std::vector<std::pair<std::string, std::string>> axes_of(const std::string& case_id) {
  // Every writer asks for every case's axes, and reading an id is most of a small writer's time:
  // remembered per thread (bounded: a long-lived process forgets them all now and then).
  thread_local std::unordered_map<std::string, std::vector<std::pair<std::string, std::string>>>
      known;
  if (auto it = known.find(case_id); it != known.end()) return it->second;
  std::vector<std::pair<std::string, std::string>> axes;
  try {
    axes = harness::Case::from_id(case_id).axes();
  } catch (const std::exception&) {
    axes = {{"case", case_id}};
  }
  if (known.size() >= 100000) known.clear();
  known.emplace(case_id, axes);
  return axes;
}

std::vector<std::string> axis_names(const RunData& run) {
  std::vector<std::string> names;
  for (const auto& r : run.records) {
    for (const auto& axis : axes_of(r.case_id)) {
      if (std::find(names.begin(), names.end(), axis.first) == names.end()) {
        names.push_back(axis.first);
      }
    }
  }
  return names;
}

const std::vector<std::string>& available_formats() {
  static const std::vector<std::string> all = {"md", "csv", "json", "junit", "html"};
  return all;
}

std::vector<std::string> parse_formats(const std::string& comma_separated) {
  std::vector<std::string> formats;
  auto add = [&](const std::string& f) {
    if (std::find(formats.begin(), formats.end(), f) == formats.end()) formats.push_back(f);
  };
  size_t start = 0;
  while (start <= comma_separated.size()) {
    size_t end = comma_separated.find(',', start);
    if (end == std::string::npos) end = comma_separated.size();
    const std::string f = comma_separated.substr(start, end - start);
    start = end + 1;
    if (f.empty()) continue;
    if (f == "all") {
      for (const std::string& each : available_formats()) add(each);
      continue;
    }
    make_writer(f);  // throws, naming the valid formats
    add(f);
  }
  return formats;
}

std::unique_ptr<Writer> make_writer(const std::string& format) {
  if (format == "md") return make_markdown_writer();
  if (format == "csv") return make_csv_writer();
  if (format == "json") return make_json_writer();
  if (format == "junit") return make_junit_writer();
  if (format == "html") return make_html_writer();
  std::string valid;
  for (const std::string& f : available_formats()) valid += (valid.empty() ? "" : ", ") + f;
  throw ReportError("unknown report format '" + format + "' (expected " + valid + " or all)");
}

std::vector<std::string> write_reports(const RunData& run, const std::vector<std::string>& formats,
                                       const std::string& out_dir) {
  std::vector<std::unique_ptr<Writer>> writers;
  for (const std::string& f : formats) writers.push_back(make_writer(f));  // all checked first
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) throw ReportError(out_dir + ": cannot create the folder: " + ec.message());
  std::vector<std::string> written;
  for (const auto& w : writers) {
    const std::string path = (fs::path(out_dir) / w->file_name()).string();
    write_file_atomically(path, [&](std::ostream& out) { w->write(run, out); });
    written.push_back(path);
  }
  return written;
}

}  // namespace qlc::reports
