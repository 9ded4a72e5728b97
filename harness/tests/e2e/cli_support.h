// Helpers for the end-to-end tests: run the built qlora-compat as a real subprocess, in a
// scratch folder of its own, and read what it left behind.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

extern char** environ;

namespace qlc::e2e {

namespace fs = std::filesystem;

// Absolute: the CLI runs in a scratch folder of its own (Bazel passes paths relative to the
// runfiles root, where the tests start).
// The full id of a case of the original core (five parts): the later axes at the defaults case.h
// documents for such ids.
inline std::string full_id(const std::string& core_id) {
  return core_id + "/amp=none/adapter=model/kbit=off/ckpt=off/stack=current/model=tiny";
}

inline std::string cli_path() { return fs::absolute(QLC_CLI_PATH).string(); }
inline fs::path source_dir() { return fs::absolute(QLC_SOURCE_DIR); }

inline std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
}

inline std::vector<std::string> non_empty_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream ss(text);
  for (std::string line; std::getline(ss, line);) {
    if (line.find_first_not_of(" \t\r") != std::string::npos) lines.push_back(line);
  }
  return lines;
}

struct Result {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
};

// A started qlora-compat process; stdout/stderr go to files in `dir`.
class Process {
 public:
  // `wrapper`, when given, runs first with qlora-compat's path and `args` after it (e.g.
  // {"/bin/sh", "-c", "ulimit -f 64; exec \"$0\" \"$@\""}).
  Process(const std::vector<std::string>& args, const fs::path& dir, const std::string& tag,
          const std::vector<std::string>& wrapper = {})
      : out_path_(dir / (tag + ".stdout")), err_path_(dir / (tag + ".stderr")) {
    std::vector<std::string> argv_text = wrapper;
    argv_text.push_back(cli_path());
    argv_text.insert(argv_text.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_text) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, out_path_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, err_path_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    // Run from the scratch folder so that relative defaults (results/, cases/) land there.
    std::string cwd = dir.string();
    int rc = spawn_in(cwd, argv.data(), &actions);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) ADD_FAILURE() << "cannot start " << cli_path() << ": " << std::strerror(rc);
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }

  // Waits up to `limit`; past it the process is killed and the test fails.
  Result wait(std::chrono::seconds limit = std::chrono::seconds(300)) {
    Result r;
    if (pid_ <= 0) return r;
    auto deadline = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        ADD_FAILURE() << "qlora-compat did not finish within " << limit.count() << " s";
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    reaped_ = true;
    if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
    r.out = read_text(out_path_);
    r.err = read_text(err_path_);
    return r;
  }

 private:
  // The child starts in `cwd` (glibc >= 2.29; elsewhere in ours: the tests pass absolute paths
  // wherever it matters).
  int spawn_in(const std::string& cwd, char** argv, posix_spawn_file_actions_t* actions) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 29))
    posix_spawn_file_actions_addchdir_np(actions, cwd.c_str());
#else
    (void)cwd;
#endif
    return posix_spawn(&pid_, argv[0], actions, nullptr, argv, environ);
  }

  fs::path out_path_, err_path_;
  pid_t pid_ = -1;
  bool reaped_ = false;
};

inline Result run_cli(const std::vector<std::string>& args, const fs::path& dir,
                      std::chrono::seconds limit = std::chrono::seconds(300)) {
  static int counter = 0;
  Process p(args, dir, "cli" + std::to_string(counter++));
  return p.wait(limit);
}

// The JSON lines of a records file (complete lines only).
inline std::vector<nlohmann::json> read_records(const fs::path& path) {
  std::vector<nlohmann::json> records;
  std::string text = read_text(path);
  size_t start = 0;
  while (true) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) break;
    std::string line = text.substr(start, nl - start);
    start = nl + 1;
    if (!line.empty()) records.push_back(nlohmann::json::parse(line));
  }
  return records;
}

inline std::vector<std::string> case_ids(const std::vector<nlohmann::json>& records) {
  std::vector<std::string> ids;
  for (const auto& r : records) ids.push_back(r.at("case").get<std::string>());
  return ids;
}

// A scratch folder per test, removed afterwards unless the test failed (to look at).
class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "qlc-e2e-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!HasFailure()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    } else {
      std::cerr << "scratch folder kept: " << dir_ << "\n";
    }
  }
  // A matrix file in the scratch folder.
  fs::path matrix(const std::string& yaml, const std::string& name = "matrix.yaml") {
    fs::path p = dir_ / name;
    write_text(p, yaml);
    return p;
  }
  Result run(const std::vector<std::string>& args,
             std::chrono::seconds limit = std::chrono::seconds(300)) {
    return run_cli(args, dir_, limit);
  }
  fs::path dir_;
};

// A small CPU matrix whose cases run quickly (fp32 everywhere: expected to train on any CPU).
inline const char* kFourCases =
    "matrix:\n"
    "  device: [cpu]\n"
    "  weights: [none, nf4, fp4, int8]\n"
    "  param_dtype: [fp32]\n"
    "  compute_dtype: [fp32]\n"
    "  optimizer: [adamw-fp32]\n";

}  // namespace qlc::e2e
