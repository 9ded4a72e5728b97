// libFuzzer target: the records reader over any text. A RecordError ("file:line: reason") is the
// reader's answer to a malformed line; a cut-short last line is not an error. Any other
// exception, crash, hang or sanitizer report is a bug. What it reads must write back and read
// again as the same records.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "qlc/harness/record.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto records = qlc::harness::parse_records(text, "fuzz.jsonl");
    std::string again;
    for (const auto& r : records) again += r.to_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    const auto reread = qlc::harness::parse_records(again, "fuzz-again.jsonl");
    if (reread.size() != records.size()) std::abort();  // a record that does not survive writing
  } catch (const qlc::harness::RecordError&) {
  }
  return 0;
}
