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
// (PR_SET_PDEATHSIG), and its workers die with it. The run waits for every reply with a deadline;
// a server that misses one is killed and replaced (see Impl::retire).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <memory>
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

namespace {

// Every wait for the server has a deadline. Loading LibTorch takes a fraction of a second of
// CPU; a machine under heavy load may need many times more. A server not ready in time is not
// used (workers are then spawned from scratch, which costs only speed).
constexpr auto kStartLimit = std::chrono::seconds(30);
// While waiting, the server is looked at this often: one found stopped (SIGSTOP from outside)
// at two looks in a row is given up at once instead of at the deadline. Two looks: a terminal's
// job control stops and continues the whole process group, this run included.
constexpr auto kLookEvery = std::chrono::seconds(1);
// After the time limit the server is asked to kill the worker; it answers within milliseconds
// (one poll() round and a wait4). Past this the server itself is stuck and is killed.
constexpr auto kKillGrace = std::chrono::seconds(3);
// At the end of the run the server kills what still runs and exits (milliseconds).
constexpr auto kEndLimit = std::chrono::seconds(5);
// A server replaced this many times in one run is not used again (workers are spawned).
constexpr int kMaxReplacements = 5;

// 'T' (stopped, e.g. SIGSTOP) or 't' (stopped by a tracer) in /proc/PID/stat.
bool process_stopped(pid_t pid) {
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (f == nullptr) return false;
  char text[512] = {0};
  const size_t n = std::fread(text, 1, sizeof text - 1, f);
  std::fclose(f);
  const char* paren = std::strrchr(text, ')');  // the command name may hold spaces
  if (n == 0 || paren == nullptr || paren[1] != ' ') return false;
  return paren[2] == 'T' || paren[2] == 't';
}

// Signals that only come from outside: the server itself never raises them.
bool sent_from_outside(int sig) {
  return sig == SIGKILL || sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT;
}

}  // namespace

struct ForkServer::Impl {
  struct Ended {
    int status;
    long max_rss_kib;
  };
  // One server process. A server that stops answering is killed and a fresh one takes its place;
  // a worker's request keeps a reference to the server that forked it.
  struct Server {
    pid_t pid = -1;
    int socket = -1;
    std::thread reader;
    std::mutex send_mutex;  // one message at a time on the socket (held without Impl::mutex)
    bool ready = false;
    bool gone = false;
    bool by_machine = false;  // gone because of the machine (killed or stopped from outside)
    std::string why;          // why it is not ready / gone
    std::map<long, long> started;  // request id -> worker pid, or -errno when the fork failed
    std::map<long, Ended> ended;   // worker pid -> how it ended
  };

  std::string executable;
  std::string log_path;
  std::mutex mutex;  // guards the state below and that of every Server
  std::condition_variable changed;
  std::shared_ptr<Server> current;             // null or gone: the next request starts one
  std::vector<std::shared_ptr<Server>> all;    // every server of the run, ended at the end
  std::string why;                             // why there is no usable server
  bool starting = false;
  int replacements = 0;
  long next_id = 1;

  void read_replies(Server* s) {
    LineReader in(s->socket);
    std::string line;
    while (in.next(&line)) {
      std::istringstream ss(line);
      std::string what;
      ss >> what;
      std::lock_guard<std::mutex> lock(mutex);
      if (what == "ready") {
        s->ready = true;
      } else if (what == "started" || what == "failed") {
        long id = 0, value = 0;
        ss >> id >> value;
        s->started[id] = what == "started" ? value : -value;
      } else if (what == "exited") {
        long worker = 0, max_rss = 0;
        int status = 0;
        ss >> worker >> status >> max_rss;
        s->ended[worker] = Ended{status, max_rss};
      }
      changed.notify_all();
    }
    int status = 0;
    while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR) {
    }
    std::lock_guard<std::mutex> lock(mutex);
    s->gone = true;
    if (s->why.empty()) {  // not ended by us: by itself (our bug) or from outside
      if (WIFSIGNALED(status)) {
        const int sig = WTERMSIG(status);
        s->by_machine = sent_from_outside(sig);
        s->why = "the fork server was killed by " + signal_name(sig) +
                 (s->by_machine ? " from outside qlora-compat" : "");
      } else {
        s->why = "the fork server exited with code " + std::to_string(WEXITSTATUS(status));
      }
    }
    changed.notify_all();
  }

  enum class Wait { kAnswered, kDeadline, kStopped };
  // Waits (lock held, released while waiting) until `answered`, the deadline, or server `s` found
  // stopped from outside.
  template <class Pred>
  Wait wait_for_server(std::unique_lock<std::mutex>& lock, const Server& s,
                       detail::Clock::time_point deadline, Pred answered) {
    int stopped_looks = 0;
    while (true) {
      const auto look = std::min(deadline, detail::Clock::now() + kLookEvery);
      if (changed.wait_until(lock, look, answered)) return Wait::kAnswered;
      if (detail::Clock::now() >= deadline) return Wait::kDeadline;
      stopped_looks = process_stopped(s.pid) ? stopped_looks + 1 : 0;
      if (stopped_looks >= 2) return Wait::kStopped;
    }
  }

  // Starts a server and waits (lock held, released while waiting) until it is ready or failed.
  std::shared_ptr<Server> start(std::unique_lock<std::mutex>& lock, bool first) {
    auto s = std::make_shared<Server>();
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      why = std::string("socketpair: ") + std::strerror(errno);
      return nullptr;
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
    // A replacement appends: the log of the server it replaces stays readable.
    posix_spawn_file_actions_addopen(&actions, 2, log_path.c_str(),
                                     O_WRONLY | O_CREAT | (first ? O_TRUNC : O_APPEND), 0644);
    int err = posix_spawn(&s->pid, executable.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (err != 0) {
      close(fds[0]);
      why = "cannot start '" + executable + "': " + std::strerror(err);
      return nullptr;
    }
    s->socket = fds[0];
    s->reader = std::thread([this, raw = s.get()] { read_replies(raw); });
    all.push_back(s);
    const Wait w = wait_for_server(lock, *s, detail::Clock::now() + kStartLimit,
                                   [&] { return s->ready || s->gone; });
    if (w != Wait::kAnswered) {
      retire(*s, "the fork server did not start within " +
                     std::to_string(std::chrono::seconds(kStartLimit).count()) + " s");
    }
    if (s->gone) {
      why = s->why;
      return nullptr;
    }
    return s;
  }

  // Kills a server that stopped answering (its workers die with it: PR_SET_PDEATHSIG); the
  // reader reaps it. The next request starts a fresh one.
  void retire(Server& s, const std::string& reason) {
    if (s.gone) return;
    s.by_machine = process_stopped(s.pid);
    s.why = reason + (s.by_machine ? " (it was stopped from outside qlora-compat, e.g. SIGSTOP)"
                                   : "") + "; it was killed and replaced";
    kill(s.pid, SIGKILL);
    if (current.get() == &s) current.reset();
  }

  // The server to send a request to: the current one, or a fresh one when it has gone. Null
  // (with `why`) when there is none: the caller spawns the worker from scratch.
  std::shared_ptr<Server> usable(std::unique_lock<std::mutex>& lock) {
    changed.wait(lock, [&] { return !starting; });
    if (current && !current->gone) return current;
    if (current) {  // gone since the last request
      why = current->why;
      current.reset();
    }
    if (replacements >= kMaxReplacements) return nullptr;
    ++replacements;
    starting = true;
    current = start(lock, false);
    starting = false;
    changed.notify_all();
    return current;
  }
};

ForkServer::ForkServer(const std::string& executable, const std::string& log_path)
    : impl_(std::make_unique<Impl>()) {
  impl_->executable = executable;
  impl_->log_path = log_path;
  std::unique_lock<std::mutex> lock(impl_->mutex);
  impl_->current = impl_->start(lock, true);
}

ForkServer::~ForkServer() {
  std::unique_lock<std::mutex> lock(impl_->mutex);
  // End of requests: each server kills whatever still runs and exits; its reader then reaps it.
  for (auto& s : impl_->all) {
    if (!s->gone) shutdown(s->socket, SHUT_WR);
  }
  const auto deadline = detail::Clock::now() + kEndLimit;
  for (auto& s : impl_->all) {
    if (impl_->wait_for_server(lock, *s, deadline, [&] { return s->gone; }) !=
        Impl::Wait::kAnswered) {
      kill(s->pid, SIGKILL);
    }
  }
  lock.unlock();
  for (auto& s : impl_->all) {
    if (s->reader.joinable()) s->reader.join();
    close(s->socket);
  }
}

bool ForkServer::ready() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->current && impl_->current->ready && !impl_->current->gone;
}

std::string ForkServer::error() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->current ? impl_->current->why : impl_->why;
}

namespace detail {
namespace {

bool send_line(ForkServer::Impl::Server& s, const std::string& line) {
  std::lock_guard<std::mutex> lock(s.send_mutex);
  return send_all(s.socket, line + "\n");
}

}  // namespace

bool fork_worker(ForkServer::Impl& impl, const WorkerRequest& request, const std::string& log_path,
                 Clock::time_point deadline, WorkerExit* exit, std::string* error) {
  std::unique_lock<std::mutex> lock(impl.mutex);
  const std::shared_ptr<ForkServer::Impl::Server> server = impl.usable(lock);
  if (!server) {
    *error = "the fork server is not running: " + impl.why;
    return false;
  }
  ForkServer::Impl::Server& s = *server;
  const long id = impl.next_id++;
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
  // The reply takes milliseconds; the case's own time limit (which counts its start, as a
  // spawned worker's does) is the deadline.
  using Wait = ForkServer::Impl::Wait;
  if (impl.wait_for_server(lock, s, deadline, [&] { return s.started.count(id) || s.gone; }) !=
      Wait::kAnswered) {
    impl.retire(s, "the fork server did not answer a request to start the worker");
    exit->lost = "the worker never started: " + s.why;
    exit->lost_to_machine = s.by_machine;
    return true;
  }
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
  const Wait w = impl.wait_for_server(lock, s, deadline, done);
  if (w == Wait::kStopped) {
    // The worker's end could never be reported: give up on the server (the worker dies with it).
    impl.retire(s, "the fork server stopped answering while the worker ran");
  } else if (w == Wait::kDeadline) {
    lock.unlock();
    send_line(s, nlohmann::json({{"op", "kill"}, {"pid", pid}}).dump());
    lock.lock();
    exit->timed_out = true;
    if (impl.wait_for_server(lock, s, detail::Clock::now() + kKillGrace, done) !=
        Wait::kAnswered) {
      impl.retire(s, "the fork server did not answer within " +
                         std::to_string(std::chrono::seconds(kKillGrace).count()) +
                         " s when asked to kill a worker past its time limit");
    }
  }
  auto it = s.ended.find(pid);
  if (it == s.ended.end()) {
    exit->lost = "the worker's end is unknown: " + s.why;
    exit->lost_to_machine = s.by_machine;
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
      if (in < 0 || out < 0) std::_Exit(worker_exit_for_write_error(errno, kWorkerExitUsage));
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
