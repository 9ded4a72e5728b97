// The inputs of merge and diff: runs in any of their forms (merge.h), and the environment key
// that decides which column a record belongs to.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "qlc/harness/case.h"
#include "qlc/reports/merge.h"

namespace qlc::reports {

namespace fs = std::filesystem;

namespace {

constexpr int kReadableReportVersion = 1;  // json_writer.cc's

const nlohmann::json& at_or_null(const nlohmann::json& j, const char* key) {
  static const nlohmann::json null;
  return j.is_object() && j.contains(key) ? j[key] : null;
}

std::string text(const nlohmann::json& j) {
  if (j.is_null()) return "unknown";
  return j.is_string() ? j.get<std::string>() : j.dump();
}

nlohmann::json parse_json_file(const std::string& path, const std::string& expected) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ReportError(path + ": cannot read (expected " + expected + ")");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw ReportError(path + ": not valid JSON at byte " + std::to_string(e.byte) + " (expected " +
                      expected + ")");
  }
}

int report_version_of(const nlohmann::json& doc) {
  const nlohmann::json& v = at_or_null(doc, "report_version");
  return v.is_number_integer() ? v.get<int>() : -1;
}

bool is_run_folder(const fs::path& p) {
  return fs::is_directory(p) &&
         (fs::exists(p / "records.jsonl") || fs::exists(p / "report.json") ||
          fs::exists(p / "environment.json"));
}

std::string slug_text(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '.') {
      out += static_cast<char>(std::tolower(c));
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

}  // namespace

namespace {

// One input as read, before its report version is judged.
constexpr int kRecords = -1000;  // a run folder's records.jsonl: no report version
struct Loaded {
  RunData run;
  int version = kRecords;  // else report_version_of: -1 when missing
};

// A report.json of any version; its cases are read only at the version this code knows.
Loaded read_report_json(const std::string& path) {
  const nlohmann::json doc = parse_json_file(path, "a report.json of `qlora-compat report`");
  if (!doc.is_object() || !doc.contains("cases")) {
    throw ReportError(path + ": not a report.json (expected an object with \"report_version\" and "
                      "\"cases\")");
  }
  Loaded l;
  l.version = report_version_of(doc);
  l.run.dir = path;
  if (l.version != kReadableReportVersion) return l;
  l.run.environment = at_or_null(doc, "environment");
  l.run.truncated_tail = at_or_null(doc, "truncated_tail").is_boolean() && doc["truncated_tail"];
  const nlohmann::json& cases = doc["cases"];
  if (!cases.is_array()) throw ReportError(path + ": \"cases\" is not an array");
  for (size_t i = 0; i < cases.size(); ++i) {
    try {
      l.run.records.push_back(harness::Record::from_json(cases[i]));
    } catch (const std::exception& e) {
      throw ReportError(path + ": case " + std::to_string(i + 1) + ": " + e.what());
    }
  }
  return l;
}

// A folder that is itself one run: records first (the source of truth), else its report.json.
Loaded read_run_folder(const fs::path& dir) {
  if (fs::exists(dir / "records.jsonl") || !fs::exists(dir / "report.json")) {
    return {load_run(dir.string()), kRecords};  // names DIR/records.jsonl when it is missing
  }
  return read_report_json((dir / "report.json").string());
}

std::vector<Loaded> read_inputs(const std::string& path_text) {
  const fs::path path = path_text;
  if (!fs::exists(path)) {
    throw ReportError(path_text + ": no such file or folder (expected a run folder, a report.json "
                      "or a folder of them)");
  }
  if (!fs::is_directory(path)) {
    if (path.filename() == "records.jsonl") return {{load_run(path.parent_path().string()), kRecords}};
    return {read_report_json(path_text)};
  }
  if (is_run_folder(path)) return {read_run_folder(path)};
  // A merge's output keeps its columns in runs/; any other folder holds runs side by side.
  const fs::path holder = fs::is_directory(path / "runs") ? path / "runs" : path;
  std::vector<fs::path> entries;
  for (const auto& e : fs::directory_iterator(holder)) entries.push_back(e.path());
  std::sort(entries.begin(), entries.end());
  std::vector<Loaded> runs;
  for (const fs::path& e : entries) {
    if (fs::is_directory(e)) {
      if (!is_run_folder(e)) {
        throw ReportError(e.string() + ": not a run (expected records.jsonl + environment.json, "
                          "or a report.json)");
      }
      runs.push_back(read_run_folder(e));
    } else if (e.extension() == ".json") {
      runs.push_back(read_report_json(e.string()));
    }
  }
  if (runs.empty()) {
    throw ReportError(path_text + ": no run in this folder (expected records.jsonl, a report.json, "
                      "or folders holding them)");
  }
  return runs;
}

std::string version_text(int v) { return v < 0 ? std::string("none") : std::to_string(v); }

// Every report.json must have the version this code reads; mixed versions are named together.
std::vector<RunData> checked(std::vector<Loaded> loaded) {
  std::map<int, std::string> first_file;  // report version -> its first file
  for (const Loaded& l : loaded) {
    if (l.version != kRecords) first_file.emplace(l.version, l.run.dir);
  }
  if (first_file.size() > 1) {
    std::string list;
    for (const auto& [v, f] : first_file) {
      list += (list.empty() ? "" : ", ") + f + " has " + version_text(v);
    }
    throw ReportError("mixed report versions: " + list + "; expected report_version " +
                      std::to_string(kReadableReportVersion) +
                      " everywhere (regenerate the others from their run folders with "
                      "`qlora-compat report`)");
  }
  std::vector<RunData> runs;
  for (Loaded& l : loaded) {
    if (l.version != kRecords && l.version != kReadableReportVersion) {
      throw ReportError(l.run.dir + ": report_version " + version_text(l.version) + ", expected " +
                        std::to_string(kReadableReportVersion) +
                        " (regenerate it from its run folder with `qlora-compat report`)");
    }
    runs.push_back(std::move(l.run));
  }
  return runs;
}

}  // namespace

RunData load_report_json(const std::string& path) { return checked({read_report_json(path)}).front(); }

std::vector<RunData> load_inputs(const std::string& path) { return checked(read_inputs(path)); }

std::vector<RunData> load_all_inputs(const std::vector<std::string>& paths) {
  std::vector<Loaded> all;
  for (const std::string& p : paths) {
    for (Loaded& l : read_inputs(p)) all.push_back(std::move(l));
  }
  return checked(std::move(all));
}

EnvironmentKey environment_key(const nlohmann::json& environment, const std::string& case_id) {
  const nlohmann::json& facts = at_or_null(environment, "facts");
  std::string device = "cpu";
  try {
    device = harness::Case::from_id(case_id).device;
  } catch (const std::exception&) {
    // An id the case model cannot read: the CPU (the only device such a record can come from).
  }
  const nlohmann::json& libtorch = at_or_null(facts, "libtorch");
  EnvironmentKey key;
  key.fields = {{"libtorch", at_or_null(libtorch, "version")}};
  std::string version = text(at_or_null(libtorch, "version"));
  if (device.rfind("cuda", 0) == 0) {
    const nlohmann::json& cuda = at_or_null(facts, "cuda");
    const nlohmann::json& devices = at_or_null(cuda, "devices");
    size_t index = 0;
    if (device.size() > 5) index = std::stoul(device.substr(5));
    nlohmann::json gpu = devices.is_array() && index < devices.size() ? devices[index]
                         : devices.is_array() && !devices.empty()     ? devices[0]
                                                                      : nlohmann::json();
    key.fields["device"] = "cuda";
    key.fields["gpu"] = at_or_null(gpu, "name");
    key.fields["compute_capability"] = at_or_null(gpu, "compute_capability");
    key.fields["cuda_runtime"] = at_or_null(cuda, "runtime_version");
    std::string cc = text(at_or_null(gpu, "compute_capability"));
    cc.erase(std::remove(cc.begin(), cc.end(), '.'), cc.end());
    key.label = text(at_or_null(gpu, "name")) + " (sm_" + cc + ") · LibTorch " + version +
                " · CUDA " + text(at_or_null(cuda, "runtime_version"));
  } else {
    const nlohmann::json& cpu = at_or_null(facts, "cpu");
    key.fields["device"] = "cpu";
    key.fields["cpu"] = at_or_null(cpu, "model");
    key.fields["isa"] = at_or_null(cpu, "isa");
    key.label = "CPU " + text(at_or_null(cpu, "model")) + " · LibTorch " + version;
  }
  // FNV-1a of the key's canonical dump: two keys with one label still get two slugs.
  const std::string dump = key.fields.dump();
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : dump) h = (h ^ ch) * 1099511628211ull;
  char hex[7];
  std::snprintf(hex, sizeof hex, "%06llx", static_cast<unsigned long long>(h & 0xffffff));
  key.slug = slug_text(key.label) + "-" + hex;
  return key;
}

}  // namespace qlc::reports
