// A full disk during a real run: the case that met it is recorded as machine_fault (not a
// harness_error), the run stops at once with one error line and exit status 3, and --resume,
// once there is room again, runs every case, the one cut short included.
//
// Two ways to fill the disk: the file size limit (`ulimit -f`: writes past it fail with EFBIG),
// which needs no privileges and works everywhere, and a real tmpfs of 64 KiB (ENOSPC), which
// needs root and is skipped, with the reason, where mounting is not allowed.
#include <sys/mount.h>

#include <map>

#include "cli_support.h"

namespace qlc::e2e {
namespace {

// 64 KiB: environment.json and a record (a few KiB each) fit, the tiny model's checkpoint
// (the first thing a worker writes, over 200 KiB in fp32) does not.
constexpr int kRoomKiB = 64;

class DiskFullTest : public CliTest {
 protected:
  std::vector<std::string> run_args(const fs::path& out) {
    return {"run", "--matrix", matrix(kFourCases).string(), "--out", out.string(), "--steps", "1",
            "--jobs", "1", "--timeout", "60"};
  }
  // The full-disk run's results, then the resumed run's with room again.
  void expect_stopped_then_resumed(const Result& r, const fs::path& out, const char* reason) {
    EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
    const auto err_lines = non_empty_lines(r.err);
    ASSERT_FALSE(err_lines.empty()) << r.out;
    // One clear line: the error, what to do; the progress lines before it are not errors.
    const std::string& line = err_lines.back();
    EXPECT_EQ(line.rfind("qlora-compat: error: disk full: ", 0), 0u) << r.err;
    EXPECT_NE(line.find(reason), std::string::npos) << line;
    EXPECT_NE(line.find("the run stopped after 1 of 4 cases"), std::string::npos) << line;
    EXPECT_NE(line.find("--resume"), std::string::npos) << line;
    for (const auto& l : err_lines) EXPECT_EQ(l.find("harness_error"), std::string::npos) << l;
    // Stopped at the first case: every later case would have failed the same way.
    const auto records = read_records(out / "records.jsonl");
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].at("outcome"), "machine_fault") << records[0];
    EXPECT_EQ(records[0].at("message").get<std::string>().rfind("disk full: ", 0), 0u)
        << records[0].at("message");
  }
  void expect_resume_runs_all(const fs::path& out) {
    auto args = run_args(out);
    args.push_back("--resume");
    Result again = run(args);
    EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
    // The machine_fault case ran again: all four run now, none taken from the earlier run.
    EXPECT_NE(again.out.find("4 of 4 cases recorded (4 run now)"), std::string::npos) << again.out;
    std::map<std::string, std::string> latest;
    for (const auto& rec : read_records(out / "records.jsonl")) latest[rec.at("case")] = rec.at("outcome");
    ASSERT_EQ(latest.size(), 4u);
    for (const auto& [id, outcome] : latest) EXPECT_EQ(outcome, "ok") << id;
  }
};

TEST_F(DiskFullTest, FileSizeLimitStopsTheRunAndResumeRunsTheCaseAgain) {
  const fs::path out = dir_ / "out";
  Process p(run_args(out), dir_, "limited",
            {"/bin/sh", "-c", "ulimit -f " + std::to_string(kRoomKiB) + " && exec \"$0\" \"$@\""});
  Result r = p.wait();
  expect_stopped_then_resumed(r, out, "File too large");
  expect_resume_runs_all(out);
}

TEST_F(DiskFullTest, FullTmpfsStopsTheRunAndResumeRunsTheCaseAgain) {
  const fs::path disk = dir_ / "disk";
  fs::create_directories(disk);
  const std::string options = "size=" + std::to_string(kRoomKiB) + "k";
  if (mount("qlc-disk-full-test", disk.c_str(), "tmpfs", 0, options.c_str()) != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno)
                 << "; needs root): the file size limit test covers the same path";
  }
  const fs::path out = disk / "out";
  Result r = run(run_args(out));
  // Room again: the run's folder moves off the full disk.
  const fs::path moved = dir_ / "out";
  fs::copy(out, moved, fs::copy_options::recursive);
  umount2(disk.c_str(), MNT_DETACH);
  expect_stopped_then_resumed(r, moved, "No space left on device");
  expect_resume_runs_all(moved);
}

}  // namespace
}  // namespace qlc::e2e
