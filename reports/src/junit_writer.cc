// junit.xml for CI dashboards, written with pugixml (a real XML library escapes for us). One
// <testcase> per case: name = case id, classname = weight format (nf4+dq, int8, ...), time = the
// case's wall time in seconds. Test semantics are ctest's: a case passes when it ends as the
// rules predicted; a misprediction is a <failure> whose text shows prediction, observation and
// rule; harness_error (our own bug) and machine_fault (the machine stopped the case: disk full,
// killed from outside) are <error>s, neither says anything about the settings; a skipped case is
// <skipped> with its reason.
// Without rules (no prediction) a case is expected to work. Outcome, axes, timings and memory
// are <property> elements of the testcase.
#include <cmath>
#include <cstdio>
#include <ostream>

#include <pugixml.hpp>

#include "document.h"

namespace qlc::reports {

namespace {

using harness::Outcome;
using harness::Record;

// XML 1.0 cannot hold most control characters, not even as references (worker output carries
// ANSI colour escapes), nor U+FFFE/U+FFFF: each becomes U+FFFD. Everything else is escaped by
// pugixml.
std::string xml_safe(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
      out += "\xEF\xBF\xBD";
    } else if (c == 0xEF && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0xBF &&
               (static_cast<unsigned char>(s[i + 2]) & 0xFE) == 0xBE) {
      out += "\xEF\xBF\xBD";
      i += 2;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string number(double v, const char* format = "%.6g") {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

void attribute(pugi::xml_node node, const char* name, const std::string& value) {
  node.append_attribute(name).set_value(xml_safe(value).c_str());
}

void property(pugi::xml_node properties, const std::string& name, const std::string& value) {
  pugi::xml_node p = properties.append_child("property");
  attribute(p, "name", name);
  attribute(p, "value", value);
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

void add_properties(pugi::xml_node testcase, const Record& r,
                    const std::vector<std::pair<std::string, std::string>>& axes) {
  pugi::xml_node ps = testcase.append_child("properties");
  property(ps, "outcome", harness::to_string(r.outcome));
  property(ps, "phase", harness::to_string(r.phase));
  property(ps, "step", std::to_string(r.step));
  if (r.prediction) {
    property(ps, "predicted", harness::to_string(r.prediction->outcome));
    property(ps, "rule", r.prediction->rule);
  }
  if (r.fix_check) {
    property(ps, "fix_case", r.fix_check->case_id);
    property(ps, "fix_outcome", harness::to_string(r.fix_check->outcome));
    property(ps, "fix_verified", r.fix_check->verified() ? "true" : "false");
  }
  for (const auto& [name, value] : axes) property(ps, "axis." + name, value);
  property(ps, "steps_run", std::to_string(r.losses.size()));
  if (!r.losses.empty()) {
    property(ps, "first_loss", number(r.losses.front()));
    property(ps, "last_loss", number(r.losses.back()));
  }
  const std::pair<const char*, double> figures[] = {
      {"load_ms", r.load_ms},
      {"step_median_ms", r.step_time.median_ms},
      {"step_p90_ms", r.step_time.p90_ms},
      {"forward_median_ms", r.forward.median_ms},
      {"backward_median_ms", r.backward.median_ms},
      {"optimizer_median_ms", r.optimizer.median_ms},
      {"tokens_per_s", r.tokens_per_s},
      {"wall_ms", r.wall_ms},
      {"overhead_ms", r.overhead_ms},
      {"bits_per_param", r.base_weight_bits_per_param},
      {"theory_bits_per_param", r.theory_bits_per_param},
  };
  for (const auto& [name, value] : figures) property(ps, name, number(value));
  property(ps, "peak_memory_bytes", std::to_string(r.peak_memory_bytes));
  if (r.exit_code != 0 || r.signal != 0) {
    property(ps, "exit_code", std::to_string(r.exit_code));
    property(ps, "signal", std::to_string(r.signal));
  }
}

// What a failing testcase shows: the prediction (or its absence), the observation, the rule.
std::string failure_text(const Record& r) {
  std::string t;
  if (r.prediction) {
    t += "predicted: " + harness::to_string(r.prediction->outcome) + " (rule " +
         r.prediction->rule + ")\n";
    if (!r.prediction->why.empty()) t += "why: " + r.prediction->why + "\n";
  } else {
    t += "predicted: nothing (run without rules): expected ok\n";
  }
  t += "observed: " + harness::to_string(r.outcome) + " in phase " + harness::to_string(r.phase) +
       (r.step >= 0 ? " at step " + std::to_string(r.step) : "") + "\n";
  if (!r.message.empty()) t += "message:\n" + r.message + "\n";
  if (!r.worker_output.empty()) t += "worker output:\n" + r.worker_output + "\n";
  return t;
}

class JunitWriter : public Writer {
 public:
  std::string format() const override { return "junit"; }
  std::string file_name() const override { return "junit.xml"; }

  void write(const RunData& run, std::ostream& out) const override {
    pugi::xml_document doc;
    pugi::xml_node decl = doc.append_child(pugi::node_declaration);
    decl.append_attribute("version").set_value("1.0");
    decl.append_attribute("encoding").set_value("UTF-8");
    pugi::xml_node suites = doc.append_child("testsuites");
    pugi::xml_node suite = suites.append_child("testsuite");
    std::string env_id;
    if (run.environment.is_object() && run.environment.contains("id") &&
        run.environment["id"].is_string()) {
      env_id = run.environment["id"].get<std::string>();
    }
    attribute(suites, "name", "qlora-compat");
    attribute(suite, "name", env_id.empty() ? "qlora-compat" : "qlora-compat " + env_id);
    pugi::xml_node suite_props = suite.append_child("properties");
    property(suite_props, "environment", env_id);
    property(suite_props, "run", run.dir);
    property(suite_props, "truncated_tail", run.truncated_tail ? "true" : "false");

    size_t failures = 0, errors = 0, skipped = 0;
    double seconds = 0.0;
    for (const Record& r : run.records) {
      const auto axes = axes_of(r.case_id);
      pugi::xml_node tc = suite.append_child("testcase");
      attribute(tc, "name", r.case_id);
      attribute(tc, "classname", weight_format(axes));
      const double s = std::isfinite(r.wall_ms) && r.wall_ms > 0 ? r.wall_ms / 1000.0 : 0.0;
      seconds += s;
      attribute(tc, "time", number(s, "%.3f"));
      add_properties(tc, r, axes);
      const bool expected =
          r.prediction ? r.as_predicted() : r.outcome == Outcome::kOk;
      if (r.outcome == Outcome::kSkipped) {
        ++skipped;
        attribute(tc.append_child("skipped"), "message",
                  r.skip_reason.empty() ? "skipped" : r.skip_reason);
      } else if (r.outcome == Outcome::kHarnessError || r.outcome == Outcome::kMachineFault) {
        ++errors;
        pugi::xml_node e = tc.append_child("error");
        attribute(e, "message", harness::to_string(r.outcome) + ": " + first_line(r.message));
        attribute(e, "type", harness::to_string(r.outcome));
        e.text().set(xml_safe(failure_text(r)).c_str());
      } else if (!expected) {
        ++failures;
        pugi::xml_node f = tc.append_child("failure");
        attribute(f, "message",
                  "predicted " +
                      (r.prediction ? harness::to_string(r.prediction->outcome) + " (rule " +
                                          r.prediction->rule + ")"
                                    : std::string("ok (no rules)")) +
                      ", observed " + harness::to_string(r.outcome) + ": " +
                      first_line(r.message));
        attribute(f, "type", harness::to_string(r.outcome));
        f.text().set(xml_safe(failure_text(r)).c_str());
      } else if (!r.message.empty()) {
        // An expected failure passes; its message still helps whoever reads the dashboard.
        tc.append_child("system-out").text().set(xml_safe(r.message).c_str());
      }
    }
    for (pugi::xml_node n : {suites, suite}) {
      attribute(n, "tests", std::to_string(run.records.size()));
      attribute(n, "failures", std::to_string(failures));
      attribute(n, "errors", std::to_string(errors));
      attribute(n, "skipped", std::to_string(skipped));
      attribute(n, "time", number(seconds, "%.3f"));
    }
    doc.save(out, "  ", pugi::format_default, pugi::encoding_utf8);
  }
};

}  // namespace

std::unique_ptr<Writer> make_junit_writer() { return std::make_unique<JunitWriter>(); }

}  // namespace qlc::reports
