// Writing a file so that a reader never sees half of it: a temp file in the target's folder, then
// rename (atomic within one file system). Private to reports/.
#pragma once

#include <functional>
#include <iosfwd>
#include <string>

namespace qlc::reports {

// Creates the parent folder when missing; ReportError naming the path on any failure (the temp
// file is removed then).
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& fill);

}  // namespace qlc::reports
