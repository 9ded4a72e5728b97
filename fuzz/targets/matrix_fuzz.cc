// libFuzzer target: the matrix parser and its expansion over any text, then the filter. A
// MatrixError ("file:line:col: reason") is the parser's answer to bad input; any other exception,
// crash, hang, sanitizer report or runaway memory (libFuzzer's -rss_limit_mb) is a bug.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "qlc/harness/matrix.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    qlc::harness::Matrix m = qlc::harness::parse_matrix(text, "fuzz.yaml");
    for (const auto& c : m.cases) (void)c.id();
    qlc::harness::resolve_device(m, "cpu");
    (void)qlc::harness::filter_cases(m.cases, "nf4,int8");
  } catch (const qlc::harness::MatrixError&) {
  }
  return 0;
}
