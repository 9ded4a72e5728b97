// The fork server (see worker.h): most of a spawned worker's start-up is LibTorch's static
// initialisation (operator registration: about 0.3 s of CPU per process, as long as a tiny
// case's training steps). The server pays it once per run and forks a fresh worker per case.
//
// Protocol over one Unix socket (the server's stdin and stdout), one line per message:
//   run -> server:  {"op":"run","id":N,"case":...,"settings":{...},"record":...,"work_dir":...,
//                    "fault":...,"threads":T,"log":PATH}
//                   {"op":"kill","pid":P}          (time limit: the server kills only its own,
//                                                   not-yet-reaped child, so no pid reuse race)
//   server -> run:  ready | started N P | failed N ERRNO | exited P STATUS MAXRSS_KIB
// The server ends, killing its workers, when the socket closes; it dies with the run
// (PR_SET_PDEATHSIG), and its workers die with it.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "isolation/worker_launch.h"

extern char** environ;

namespace qlc::harness {
namespace {

bool send_all(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::send(fd, text.data() + done, text.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Splits what arrived on a socket into complete lines.
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd) {}
  // Next line without its newline; false at end of stream or error.
  bool next(std::string* line) {
    while (true) {
      size_t nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        *line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return true;
      }
      char chunk[4096];
      ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }
  bool has_line() const { return buffer_.find('\n') != std::string::npos; }
  // One read() into the buffer (the fd is readable); false at end of stream or error.
  bool fill() {
    char chunk[4096];
    ssize_t n;
    do {
      n = ::read(fd_, chunk, sizeof chunk);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }

 private:
  int fd_;
  std::string buffer_;
};

}  // namespace

// ---- the run's side --------------------------------------------------------------------------

struct ForkServer::Impl {
  pid_t pid = -1;
  int socket = -1;
  std::thread reader;
  std::mutex mutex;       // guards the state below
  std::mutex send_mutex;  // one message at a time on the socket (held without `mutex`)
  std::condition_variable changed;
  bool ready = false;
  bool gone = false;
  std::string why;  // why it is not ready / gone
  long next_id = 1;
  std::map<long, long> started;  // request id -> worker pid, or -errno when the fork failed
  struct Ended {
    int status;
    long max_rss_kib;
  };
  std::map<long, Ended> ended;  // worker pid -> how it ended

  void read_replies() {
    LineReader in(socket);
    std::string line;
    while (in.next(&line)) {
      std::istringstream ss(line);
      std::string what;
      ss >> what;
      std::lock_guard<std::mutex> lock(mutex);
      if (what == "ready") {
        ready = true;
      } else if (what == "started" || what == "failed") {
        long id = 0, value = 0;
        ss >> id >> value;
        started[id] = what == "started" ? value : -value;
      } else if (what == "exited") {
        long worker = 0, max_rss = 0;
        int status = 0;
        ss >> worker >> status >> max_rss;
        ended[worker] = Ended{status, max_rss};
      }
      changed.notify_all();
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    std::lock_guard<std::mutex> lock(mutex);
    gone = true;
    if (why.empty()) {
      why = WIFSIGNALED(status) ? "the fork server was killed by " + signal_name(WTERMSIG(status))
                                : "the fork server exited with code " +
                                      std::to_string(WEXITSTATUS(status));
    }
    changed.notify_all();
  }
};

ForkServer::ForkServer(const std::string& executable, const std::string& log_path)
    : impl_(std::make_unique<Impl>()) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    impl_->why = std::string("socketpair: ") + std::strerror(errno);
    impl_->gone = true;
    return;
  }
  std::vector<std::string> args = {executable, "worker-server", "--parent-pid",
                                   std::to_string(getpid())};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 0);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  int err = posix_spawn(&impl_->pid, executable.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (err != 0) {
    close(fds[0]);
    impl_->why = "cannot start '" + executable + "': " + std::strerror(err);
    impl_->gone = true;
    return;
  }
  impl_->socket = fds[0];
  impl_->reader = std::thread([impl = impl_.get()] { impl->read_replies(); });
  std::unique_lock<std::mutex> lock(impl_->mutex);
  // Loading LibTorch takes a fraction of a second; a machine under heavy load may need more.
  if (!impl_->changed.wait_for(lock, std::chrono::seconds(120),
                               [&] { return impl_->ready || impl_->gone; })) {
    impl_->why = "the fork server did not start within 120 s";
    lock.unlock();
    kill(impl_->pid, SIGKILL);
  }
}

ForkServer::~ForkServer() {
  if (impl_->socket < 0) return;
  // End of requests: the server kills whatever still runs and exits; the reader then reaps it.
  shutdown(impl_->socket, SHUT_WR);
  {
    std::unique_lock<std::mutex> lock(impl_->mutex);
    if (!impl_->changed.wait_for(lock, std::chrono::seconds(10), [&] { return impl_->gone; })) {
      kill(impl_->pid, SIGKILL);
    }
  }
  if (impl_->reader.joinable()) impl_->reader.join();
  close(impl_->socket);
}

bool ForkServer::ready() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->ready && !impl_->gone;
}

std::string ForkServer::error() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->why;
}

namespace detail {
namespace {

bool send_line(ForkServer::Impl& s, const std::string& line) {
  std::lock_guard<std::mutex> lock(s.send_mutex);
  return send_all(s.socket, line + "\n");
}

}  // namespace

bool fork_worker(ForkServer::Impl& s, const WorkerRequest& request, const std::string& log_path,
                 Clock::time_point deadline, WorkerExit* exit, std::string* error) {
  std::unique_lock<std::mutex> lock(s.mutex);
  if (!s.ready || s.gone) {
    *error = "the fork server is not running: " + s.why;
    return false;
  }
  const long id = s.next_id++;
  const nlohmann::json message = {{"op", "run"},
                                  {"id", id},
                                  {"case", request.case_id},
                                  {"settings", request.settings},
                                  {"record", request.record_path},
                                  {"work_dir", request.work_dir},
                                  {"fault", request.fault},
                                  {"threads", request.threads},
                                  {"log", log_path}};
  lock.unlock();
  if (!send_line(s, message.dump())) {
    *error = std::string("cannot write to the fork server: ") + std::strerror(errno);
    return false;
  }
  lock.lock();
  s.changed.wait(lock, [&] { return s.started.count(id) || s.gone; });
  if (!s.started.count(id)) {
    *error = "the fork server ended: " + s.why;
    return false;
  }
  const long pid = s.started[id];
  s.started.erase(id);
  if (pid < 0) {
    *error = std::string("the fork server could not fork: ") + std::strerror(static_cast<int>(-pid));
    return false;
  }
  auto done = [&] { return s.ended.count(pid) || s.gone; };
  if (!s.changed.wait_until(lock, deadline, done)) {
    lock.unlock();
    send_line(s, nlohmann::json({{"op", "kill"}, {"pid", pid}}).dump());
    lock.lock();
    exit->timed_out = true;
    s.changed.wait_for(lock, std::chrono::seconds(60), done);
  }
  auto it = s.ended.find(pid);
  if (it == s.ended.end()) {
    exit->lost = "the fork server ended while the worker ran (" + s.why + ")";
    return true;
  }
  exit->status = it->second.status;
  exit->usage.ru_maxrss = it->second.max_rss_kib;
  s.ended.erase(it);
  return true;
}

}  // namespace detail

// ---- the server's side -----------------------------------------------------------------------

int fork_server_main(long parent_pid) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (parent_pid > 0 && getppid() != static_cast<pid_t>(parent_pid)) return kWorkerExitUsage;
  const pid_t self = getpid();

  // Children's ends arrive through a signalfd, so one poll() waits for requests and ends alike.
  sigset_t chld, original;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &original);
  const int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) {
    std::fprintf(stderr, "qlora-compat worker-server: signalfd: %s\n", std::strerror(errno));
    return kWorkerExitUsage;
  }
  auto reply = [](const std::string& line) { return send_all(1, line + "\n"); };
  std::set<pid_t> live;
  auto reap = [&] {
    int status = 0;
    rusage usage{};
    pid_t pid;
    while ((pid = wait4(-1, &status, WNOHANG, &usage)) > 0) {
      live.erase(pid);
      reply("exited " + std::to_string(pid) + " " + std::to_string(status) + " " +
            std::to_string(usage.ru_maxrss));
    }
  };
  auto start = [&](const nlohmann::json& m) {
    const long id = m.at("id").get<long>();
    WorkerRequest request;
    request.case_id = m.at("case").get<std::string>();
    request.settings = m.at("settings");
    request.record_path = m.at("record").get<std::string>();
    request.work_dir = m.at("work_dir").get<std::string>();
    request.fault = m.at("fault").get<std::string>();
    request.threads = m.at("threads").get<int>();
    request.parent_pid = self;
    const std::string log = m.at("log").get<std::string>();
    const pid_t pid = fork();
    const int fork_errno = errno;
    if (pid == 0) {
      // The worker: the run's defaults back, the server's descriptors replaced.
      sigprocmask(SIG_SETMASK, &original, nullptr);
      close(sfd);
      int in = open("/dev/null", O_RDONLY);
      int out = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (in < 0 || out < 0) std::_Exit(kWorkerExitUsage);
      dup2(in, 0);
      dup2(out, 1);
      dup2(out, 2);
      close(in);
      close(out);
      run_worker_request(request);
    }
    if (pid < 0) {
      reply("failed " + std::to_string(id) + " " + std::to_string(fork_errno));
      return;
    }
    live.insert(pid);
    reply("started " + std::to_string(id) + " " + std::to_string(pid));
  };

  if (!reply("ready")) return 0;
  LineReader in(0);
  bool open_input = true;
  while (open_input) {
    pollfd fds[2] = {{0, POLLIN, 0}, {sfd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo info;
      while (read(sfd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
      }
      reap();
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      if (!in.fill()) open_input = false;
      std::string line;
      while (in.has_line() && in.next(&line)) {
        try {
          const auto m = nlohmann::json::parse(line);
          const std::string op = m.at("op").get<std::string>();
          if (op == "run") {
            start(m);
          } else if (op == "kill") {
            const pid_t pid = m.at("pid").get<pid_t>();
            if (live.count(pid)) kill(pid, SIGKILL);
          }
        } catch (const std::exception& e) {
          std::fprintf(stderr, "qlora-compat worker-server: bad request: %s\n", e.what());
        }
      }
    }
  }
  // The run is over (or gone): nothing still running has anyone to report to.
  for (pid_t pid : live) kill(pid, SIGKILL);
  while (!live.empty()) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0 && errno != EINTR) break;
    if (pid > 0) live.erase(pid);
  }
  return 0;
}

}  // namespace qlc::harness
