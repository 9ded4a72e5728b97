// `report --in RUN_DIR [--format md,csv,json,junit,html|all] [--out DIR]`: a run's reports
// regenerated from its records at any time (the writers live in reports/).
#include <iostream>

#include "commands.h"
#include "qlc/harness/rules.h"
#include "qlc/reports/report.h"

namespace qlc::harness::cli {

namespace {

std::vector<std::string> write_reports_of(const std::string& in,
                                          const std::vector<std::string>& formats,
                                          const std::string& out, const std::string& rules) {
  try {
    for (const std::string& f : formats) reports::make_writer(f);  // a bad name before any reading
    reports::RunData run = reports::load_run(in);
    if (!rules.empty()) {
      for (const Rule& r : load_rules(rules).rules) run.detect_by_rule[r.id] = r.detect;
    }
    return reports::write_reports(run, formats, out.empty() ? in : out);
  } catch (const reports::ReportError& e) {
    throw CliError(e.what());
  }
}

}  // namespace

std::vector<std::string> write_run_reports(const std::string& dir, const std::string& rules) {
  return write_reports_of(dir, reports::available_formats(), dir, rules);
}

int report_command(const ReportOptions& o) {
  std::vector<std::string> formats;
  try {
    formats = reports::parse_formats(o.formats);  // every name checked before any reading
  } catch (const reports::ReportError& e) {
    throw CliError(e.what());
  }
  if (formats.empty()) {
    throw CliError("--format: no format given (expected md, csv, json, junit, html or all)");
  }
  for (const std::string& path : write_reports_of(o.in, formats, o.out, o.rules)) {
    std::cout << path << "\n";
  }
  return kExitOk;
}

}  // namespace qlc::harness::cli
