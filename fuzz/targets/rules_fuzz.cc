// libFuzzer target: the rules parser over any text, then every rule's fix applied to a case. A
// RulesError ("file:line: rule 'id': reason") is the parser's answer to bad input; any other
// exception, crash, hang or sanitizer report is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include "qlc/harness/rules.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const qlc::harness::Rules rules = qlc::harness::parse_rules(text, "fuzz-rules.yaml");
    const qlc::harness::Case c;
    for (const auto& rule : rules.rules) {
      if (rule.fix) (void)qlc::harness::apply_fix(c, *rule.fix).id();
    }
  } catch (const qlc::harness::RulesError&) {
  }
  return 0;
}
