// Case selection (matrix -> device -> filter -> shard), `list` and `env`.
#include <filesystem>
#include <iostream>
#include <set>
#include <string>

#include "commands.h"
#include "qlc/harness/environment.h"
#include "qlc/harness/shard.h"

namespace qlc::harness::cli {
namespace {

// "auto", "cpu", "cuda" (= cuda:0) or "cuda:N".
std::string check_device(const std::string& d) {
  std::string device = d == "cuda" ? "cuda:0" : d;
  if (!is_valid_device(device)) {
    throw CliError("--device '" + d + "': expected auto, cpu, cuda or cuda:N");
  }
  return device;
}

void parse_shard(const std::string& text, int* index, int* count) {
  size_t slash = text.find('/');
  bool ok = slash != std::string::npos && slash > 0 && slash + 1 < text.size() &&
            text.find_first_not_of("0123456789/") == std::string::npos &&
            text.find('/', slash + 1) == std::string::npos && slash < 7 &&
            text.size() - slash < 8;
  if (ok) {
    *index = std::stoi(text.substr(0, slash));
    *count = std::stoi(text.substr(slash + 1));
    ok = *count >= 1 && *index >= 1 && *index <= *count;
  }
  if (!ok) throw CliError("--shard '" + text + "': expected i/n with 1 <= i <= n, e.g. 2/4");
}

}  // namespace

Selected select_cases(const Selection& s) {
  // Check the cheap arguments before reading anything.
  std::string device = s.device.empty() ? "" : check_device(s.device);
  int shard_index = 1, shard_count = 1;
  if (!s.shard.empty()) parse_shard(s.shard, &shard_index, &shard_count);
  if (!std::filesystem::exists(s.matrix)) {
    throw CliError("matrix file '" + s.matrix + "' not found" +
                   (s.matrix == "cases/default.yaml"
                        ? " (run from the project root, or pass --matrix FILE)"
                        : ""));
  }

  Selected out;
  out.matrix = load_matrix(s.matrix);
  if (!device.empty()) {
    for (auto& c : out.matrix.cases) c.device = device;
  }
  bool has_auto = false;
  for (const auto& c : out.matrix.cases) has_auto |= c.device == "auto";
  if (has_auto) resolve_device(out.matrix, resolve_auto_device());
  // A --device override can map several matrix devices onto one: keep the first of each id.
  std::set<std::string> seen;
  std::vector<Case> unique;
  for (const auto& c : out.matrix.cases) {
    if (seen.insert(c.id()).second) unique.push_back(c);
  }
  out.cases = filter_cases(unique, s.filter);
  // A filter that matches nothing is a typo, not an empty run (an empty shard is fine: more
  // shards than cases happens in CI).
  if (out.cases.empty() && !s.filter.empty()) {
    throw CliError("--filter '" + s.filter + "' matches none of the " +
                   std::to_string(unique.size()) + " cases of " + s.matrix);
  }
  if (!s.shard.empty()) out.cases = shard_cases(out.cases, shard_index, shard_count);
  return out;
}

std::vector<std::string> case_labels(const Case& c) {
  std::set<std::string> labels = {c.device.rfind("cuda", 0) == 0 ? "cuda" : "cpu"};
  for (const auto& [axis, value] : c.axes()) {
    if (axis == "device") continue;
    if (axis == "double_quant") {
      if (value == "true") labels.insert("dq");
      continue;
    }
    labels.insert(value);
  }
  return {labels.begin(), labels.end()};
}

int list_command(const Selection& selection, bool with_labels) {
  Selected sel = select_cases(selection);
  for (const auto& c : sel.cases) {
    std::cout << c.id();
    if (with_labels) {
      std::string joined;
      for (const auto& l : case_labels(c)) joined += (joined.empty() ? "" : ",") + l;
      std::cout << "\t" << joined;
    }
    std::cout << "\n";
  }
  return kExitOk;
}

int env_command() {
  Environment env = capture_environment();
  nlohmann::json j = {{"id", env.id()}, {"facts", env.facts}};
  std::cout << j.dump(2) << "\n";
  return kExitOk;
}

}  // namespace qlc::harness::cli
