// `qlora-compat export` and `classify`: what the peer cross-check needs from the harness (a case's
// training inputs, see qlc/harness/export.h, and the message table's verdict on a peer's error).
#include <iostream>
#include <iterator>

#include "commands.h"
#include "qlc/harness/classify.h"
#include "qlc/harness/environment.h"
#include "qlc/harness/export.h"

namespace qlc::harness::cli {

int export_command(const std::string& case_id, const std::string& matrix, const std::string& out) {
  Selection selection;
  selection.matrix = matrix;
  const Selected sel = select_cases(selection);
  Case c;
  try {
    c = Case::from_id(case_id);
  } catch (const std::invalid_argument& e) {
    throw CliError(std::string("case id: ") + e.what());
  }
  if (c.device == "auto") c.device = resolve_auto_device();
  export_case(c, sel.matrix.settings, out);
  return kExitOk;
}

int classify_command() {
  const std::string message(std::istreambuf_iterator<char>(std::cin), {});
  std::cout << to_string(classify_message(message).value_or(Outcome::kHarnessError)) << "\n";
  return kExitOk;
}

}  // namespace qlc::harness::cli
