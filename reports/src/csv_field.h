// One CSV field quoted per RFC 4180 (private to reports/; tests include it).
#pragma once

#include <string>

namespace qlc::reports {
std::string csv_field(const std::string& s);
}  // namespace qlc::reports
