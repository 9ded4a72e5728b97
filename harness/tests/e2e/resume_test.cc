// Records survive an interrupted run, and --resume finishes it: no finished case redone, no
// record lost, no worker left behind.
#include <dirent.h>

#include <map>
#include <set>
#include <string>

#include "cli_support.h"

namespace qlc::e2e {
namespace {

// Eight quick CPU cases.
constexpr const char* kEightCases =
    "matrix:\n"
    "  device: [cpu]\n"
    "  weights: [none, nf4, fp4, int8]\n"
    "  param_dtype: [fp32]\n"
    "  compute_dtype: [fp32]\n"
    "  optimizer: [adamw-fp32, adamw8bit]\n";

// Processes whose command line (arguments joined by spaces, plus a final space) contains
// `needle`. A run's workers and fork server all carry "--parent-pid <the run's pid>".
std::vector<int> processes_mentioning(const std::string& needle) {
  std::vector<int> pids;
  DIR* proc = opendir("/proc");
  if (!proc) return pids;
  while (dirent* e = readdir(proc)) {
    int pid = std::atoi(e->d_name);
    if (pid <= 0 || pid == getpid()) continue;
    std::string cmdline = read_text(fs::path("/proc") / e->d_name / "cmdline");
    for (auto& ch : cmdline) ch = ch == '\0' ? ' ' : ch;
    cmdline += ' ';
    if (cmdline.find(needle) != std::string::npos) pids.push_back(pid);
  }
  closedir(proc);
  return pids;
}

size_t complete_lines(const fs::path& p) {
  std::string text = read_text(p);
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

TEST_F(CliTest, KilledRunResumesWithoutRedoingOrLosingRecords) {
  const fs::path m = matrix(kEightCases);
  const fs::path out = dir_ / "out";
  const fs::path records_path = out / "records.jsonl";
  Result listed = run({"list", "--matrix", m.string()});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  const auto all_ids = non_empty_lines(listed.out);
  ASSERT_EQ(all_ids.size(), 8u);

  const std::vector<std::string> args = {"run", "--matrix", m.string(), "--out", out.string(),
                                         "--steps", "1", "--jobs", "1"};
  std::string needle;  // identifies the first run's workers and fork server
  {
    Process first(args, dir_, "first");
    needle = "--parent-pid " + std::to_string(first.pid()) + " ";
    // Kill the parent (SIGKILL: no chance to clean up) once some records are on disk.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(240);
    while (complete_lines(records_path) < 3 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_GE(complete_lines(records_path), 3u) << "no records appeared";
    ASSERT_EQ(kill(first.pid(), SIGKILL), 0);
    Result killed = first.wait();
    EXPECT_EQ(killed.signal, SIGKILL);
  }
  // The running worker and the fork server die with the run (they would otherwise go on for
  // nobody).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!processes_mentioning(needle).empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(processes_mentioning(needle).empty()) << "a worker outlived its run";

  const std::string before = read_text(records_path);
  const std::string before_complete = before.substr(0, before.rfind('\n') + 1);
  const auto first_ids = case_ids(read_records(records_path));
  ASSERT_GE(first_ids.size(), 3u);
  ASSERT_LT(first_ids.size(), 8u) << "the run finished before it was killed";

  Result second = run(args);  // without --resume: refused, nothing touched
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_NE(second.err.find("--resume"), std::string::npos) << second.err;
  EXPECT_EQ(read_text(records_path), before);

  std::vector<std::string> resume_args = args;
  resume_args.push_back("--resume");
  Result resumed = run(resume_args);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;

  const std::string after = read_text(records_path);
  EXPECT_EQ(after.substr(0, before_complete.size()), before_complete)
      << "earlier records were changed";
  const auto ids = case_ids(read_records(records_path));
  std::map<std::string, int> count;
  for (const auto& id : ids) ++count[id];
  for (const auto& id : all_ids) EXPECT_EQ(count[id], 1) << id;
  EXPECT_EQ(ids.size(), all_ids.size());
  // The resumed part holds only the cases the first run had not finished.
  for (size_t i = first_ids.size(); i < ids.size(); ++i) {
    EXPECT_EQ(std::count(first_ids.begin(), first_ids.end(), ids[i]), 0) << ids[i];
  }
  EXPECT_NE(resumed.out.find(std::to_string(first_ids.size()) + " from the earlier run"),
            std::string::npos)
      << resumed.out;
}

TEST_F(CliTest, ResumeOfAFinishedRunRunsNothing) {
  const fs::path m = matrix(
      "matrix:\n  device: [cpu]\n  weights: [none, nf4]\n  param_dtype: [fp32]\n"
      "  compute_dtype: [fp32]\n");
  const fs::path out = dir_ / "out";
  std::vector<std::string> args = {"run", "--matrix", m.string(), "--out", out.string(),
                                   "--steps", "1"};
  ASSERT_EQ(run(args).exit_code, 0);
  const std::string before = read_text(out / "records.jsonl");
  args.push_back("--resume");
  Result r = run(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_text(out / "records.jsonl"), before);
  EXPECT_NE(r.out.find("(0 run now, 2 from the earlier run)"), std::string::npos) << r.out;
}

// A run killed in the middle of appending leaves a cut-short last line: resume drops it and
// reruns that case, keeping every complete record.
TEST_F(CliTest, ResumeAfterACutShortRecordLine) {
  const fs::path m = matrix(
      "matrix:\n  device: [cpu]\n  weights: [none, nf4]\n  param_dtype: [fp32]\n"
      "  compute_dtype: [fp32]\n");
  const fs::path out = dir_ / "out";
  std::vector<std::string> args = {"run", "--matrix", m.string(), "--out", out.string(),
                                   "--steps", "1"};
  ASSERT_EQ(run(args).exit_code, 0);
  const std::string full = read_text(out / "records.jsonl");
  const size_t first_end = full.find('\n') + 1;
  // Keep the first record and half of the second.
  write_text(out / "records.jsonl", full.substr(0, first_end + (full.size() - first_end) / 2));
  args.push_back("--resume");
  Result r = run(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto records = read_records(out / "records.jsonl");
  ASSERT_EQ(records.size(), 2u) << read_text(out / "records.jsonl");
  EXPECT_EQ(read_text(out / "records.jsonl").substr(0, first_end), full.substr(0, first_end));
  EXPECT_NE(records[0].at("case"), records[1].at("case"));
  EXPECT_NE(r.err.find("cut short"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace qlc::e2e
