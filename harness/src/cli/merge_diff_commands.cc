// `merge RUN_OR_REPORT... --out DIR` and `diff BASE NEW`: many runs in one table, and what
// changed between two runs (both live in reports/: merge.h, diff.h).
#include <iostream>

#include "commands.h"
#include "qlc/reports/diff.h"
#include "qlc/reports/merge.h"

namespace qlc::harness::cli {

int merge_command(const MergeOptions& o) {
  try {
    const auto merged = reports::merge_runs(reports::load_all_inputs(o.inputs));
    for (const auto& env : merged) {
      std::cout << env.key.label << ": " << env.records.size() << " cases from "
                << env.sources.size() << " run(s)";
      if (!env.replaced.empty()) {
        std::cout << "; " << env.replaced.size()
                  << " case(s) in more than one: the later run's record kept (later on the "
                     "command line wins)";
      }
      std::cout << "\n";
      for (const auto& s : env.sources) std::cout << "  " << s << "\n";
    }
    for (const std::string& path : reports::write_merge(merged, o.out)) {
      std::cout << "wrote " << path << "\n";
    }
  } catch (const reports::ReportError& e) {
    throw CliError(e.what());
  }
  return kExitOk;
}

int diff_command(const DiffOptions& o) {
  reports::DiffResult diff;
  try {
    diff = reports::diff_runs(reports::merge_runs(reports::load_all_inputs({o.base})),
                              reports::merge_runs(reports::load_all_inputs({o.next})));
  } catch (const reports::ReportError& e) {
    throw CliError(e.what());
  }
  if (o.format == "json") {
    std::cout << reports::diff_json(diff).dump(2, ' ', false,
                                               nlohmann::json::error_handler_t::replace)
              << "\n";
  } else {
    reports::write_diff_text(diff, std::cout);
  }
  return diff.regressions() ? kExitRegression : kExitOk;
}

}  // namespace qlc::harness::cli
