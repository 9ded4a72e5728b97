// `report --in RUN_DIR [--format md,csv,json] [--out DIR]`: a run's reports regenerated from its
// records at any time (the writers live in reports/).
#include <iostream>
#include <sstream>

#include "commands.h"
#include "qlc/harness/rules.h"
#include "qlc/reports/report.h"

namespace qlc::harness::cli {

int report_command(const ReportOptions& o) {
  std::vector<std::string> formats;
  std::stringstream list(o.formats);
  for (std::string f; std::getline(list, f, ',');) {
    if (!f.empty()) formats.push_back(f);
  }
  if (formats.empty()) throw CliError("--format: no format given (expected md, csv, json)");
  try {
    for (const std::string& f : formats) reports::make_writer(f);  // a bad name before any reading
    reports::RunData run = reports::load_run(o.in);
    if (!o.rules.empty()) {
      for (const Rule& r : load_rules(o.rules).rules) run.detect_by_rule[r.id] = r.detect;
    }
    for (const std::string& path : reports::write_reports(run, formats, o.out.empty() ? o.in : o.out)) {
      std::cout << path << "\n";
    }
  } catch (const reports::ReportError& e) {
    throw CliError(e.what());
  }
  return kExitOk;
}

}  // namespace qlc::harness::cli
