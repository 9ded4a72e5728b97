// Parsing enums by their to_string spelling, so that each spelling is written once (in the
// to_string switch) and parse errors list every valid value.
#pragma once

#include <array>
#include <cstddef>
#include <stdexcept>
#include <string>

namespace qlc::harness::detail {

// "a, b, c" over to_string of every enumerator.
template <typename E, std::size_t N>
std::string joined_names(const std::array<E, N>& all) {
  std::string out;
  for (E v : all) {
    if (!out.empty()) out += ", ";
    out += to_string(v);
  }
  return out;
}

// The enumerator spelled `s`; otherwise std::invalid_argument
// "unknown <what> '<s>' (expected a, b, c)".
template <typename E, std::size_t N>
E parse_enum(const std::array<E, N>& all, const std::string& s, const char* what) {
  for (E v : all) {
    if (to_string(v) == s) return v;
  }
  throw std::invalid_argument("unknown " + std::string(what) + " '" + s + "' (expected " +
                              joined_names(all) + ")");
}

}  // namespace qlc::harness::detail
