// What a person sees during and after a run: the progress line (stderr) and the plain summary
// table (stdout). The report formats (JSON, Markdown, JUnit, ...) belong to reports/.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "commands.h"

namespace qlc::harness::cli {
namespace {

std::string first_line(const std::string& text) {
  size_t nl = text.find('\n');
  std::string line = nl == std::string::npos ? text : text.substr(0, nl);
  constexpr size_t kMax = 160;
  if (line.size() > kMax) line = line.substr(0, kMax) + "...";
  return line.empty() ? "(no message)" : line;
}

std::string pad(const std::string& s, size_t width) {
  return s.size() >= width ? s : s + std::string(width - s.size(), ' ');
}

}  // namespace

std::string format_duration(double seconds) {
  if (!(seconds >= 0.0)) seconds = 0.0;
  char buf[32];
  if (seconds < 10.0) {
    std::snprintf(buf, sizeof buf, "%.1fs", seconds);
    return buf;
  }
  long s = std::lround(seconds);
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%lds", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  }
  return buf;
}

Progress::Progress(size_t total, bool enabled)
    : total_(total),
      enabled_(enabled),
      tty_(isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()) {}

std::string Progress::eta() const {
  if (done_ == 0) return "ETA ?";
  double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  // Throughput so far (cases per second, parallel jobs included) times what is left.
  return "ETA " + format_duration(elapsed / static_cast<double>(done_) *
                                  static_cast<double>(total_ - done_));
}

void Progress::started(const Case& c) {
  if (!enabled_ || !tty_) return;  // in logs, a line per finished case is enough
  std::lock_guard<std::mutex> lock(mutex_);
  std::fprintf(stderr, "\r\033[K[%zu/%zu] %s (%s)", done_ + 1, total_, c.id().c_str(),
               eta().c_str());
  std::fflush(stderr);
}

void Progress::finished(const Case& c, const Record& r) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  ++done_;
  std::fprintf(stderr, "%s[%zu/%zu] %s: %s in %s (%s)%s", tty_ ? "\r\033[K" : "", done_, total_,
               c.id().c_str(), to_string(r.outcome).c_str(),
               format_duration(r.wall_ms / 1000.0).c_str(), eta().c_str(), tty_ ? "" : "\n");
  std::fflush(stderr);
}

void Progress::end() {
  if (!enabled_ || !tty_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  std::fprintf(stderr, "\n");
}

void print_predictions(std::ostream& out, const std::vector<Record>& records) {
  std::vector<const Record*> predicted, missed, fixed, not_fixed;
  for (const auto& r : records) {
    if (!r.prediction) continue;
    predicted.push_back(&r);
    if (!r.as_predicted()) missed.push_back(&r);
    if (r.fix_check) (r.fix_check->verified() ? fixed : not_fixed).push_back(&r);
  }
  if (predicted.empty()) return;
  out << "\npredictions: " << predicted.size() - missed.size() << " of " << predicted.size()
      << " as predicted";
  if (!fixed.empty() || !not_fixed.empty()) {
    out << "; fixes: " << fixed.size() << " verified, " << not_fixed.size() << " failed";
  }
  out << "\n";
  for (const Record* r : missed) {
    out << "  " << r->case_id << ": predicted " << to_string(r->prediction->outcome)
        << " (rule " << r->prediction->rule << "), observed " << to_string(r->outcome) << "\n";
  }
  for (const Record* r : not_fixed) {
    out << "  fix failed: " << r->case_id << " -> " << r->fix_check->case_id << ": "
        << to_string(r->fix_check->outcome) << " (rule " << r->fix_check->rule << ")\n";
  }
}

void print_summary(std::ostream& out, const SummaryInput& in) {
  out << "qlora-compat run: " << in.records.size() << " of " << in.selected << " cases recorded ("
      << in.run_now << " run now";
  if (in.resumed > 0) out << ", " << in.resumed << " from the earlier run";
  out << ") on " << in.device_text << " in " << format_duration(in.seconds) << "\n";
  out << "environment " << in.environment_line << "\n\n";

  std::map<Outcome, std::vector<const Record*>> by_outcome;
  for (const auto& r : in.records) by_outcome[r.outcome].push_back(&r);

  const size_t width = 20;
  out << "  " << pad("outcome", width) << "cases\n";
  for (Outcome o : kAllOutcomes) {
    auto it = by_outcome.find(o);
    if (it == by_outcome.end()) continue;
    out << "  " << pad(to_string(o), width) << it->second.size() << "\n";
  }
  out << "  " << pad("total", width) << in.records.size() << "\n";

  // Failures, then skips, grouped by outcome and by the message's first line; a few ids each
  // (every id reruns alone with `--filter ID`).
  constexpr size_t kIdsShown = 5;
  auto print_groups = [&](Outcome o, const std::vector<const Record*>& records) {
    std::map<std::string, std::vector<const Record*>> by_message;
    std::vector<std::string> order;
    for (const Record* r : records) {
      std::string key = first_line(o == Outcome::kSkipped && !r->skip_reason.empty()
                                       ? r->skip_reason
                                       : r->message);
      if (!by_message.count(key)) order.push_back(key);
      by_message[key].push_back(r);
    }
    out << "\n" << to_string(o) << " (" << records.size() << ")\n";
    for (const auto& key : order) {
      const auto& group = by_message[key];
      out << "  " << key << "  [" << group.size() << (group.size() == 1 ? " case]" : " cases]")
          << "\n";
      for (size_t i = 0; i < group.size() && i < kIdsShown; ++i) {
        out << "      " << group[i]->case_id << "\n";
      }
      if (group.size() > kIdsShown) {
        out << "      ... and " << group.size() - kIdsShown << " more\n";
      }
    }
  };
  bool any_failure = false;
  for (Outcome o : kAllOutcomes) {
    if (o == Outcome::kOk || o == Outcome::kSkipped || !by_outcome.count(o)) continue;
    if (!any_failure) out << "\nfailures";
    any_failure = true;
    print_groups(o, by_outcome[o]);
  }
  if (by_outcome.count(Outcome::kSkipped)) print_groups(Outcome::kSkipped, by_outcome[Outcome::kSkipped]);
  print_predictions(out, in.records);
  if (by_outcome.count(Outcome::kHarnessError)) {
    out << "\nharness_error is a bug of qlora-compat, not a property of this machine: please "
           "report it with the record.\n";
  }
  if (by_outcome.count(Outcome::kMachineFault)) {
    out << "\nmachine_fault: the machine cut these cases short (disk full, unwritable folder, "
           "killed or stopped from outside); they say nothing about the settings: rerun with "
           "--resume once the cause is gone.\n";
  }
  if (in.records.size() < in.selected) {
    out << "\n" << in.selected - in.records.size()
        << " selected cases have no record (the run stopped early): rerun with --resume\n";
  }
  out << "\nrecords:     " << in.records_path << "\n";
  out << "environment: " << in.environment_path << "\n";
}

}  // namespace qlc::harness::cli
