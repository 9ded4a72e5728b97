// Temp file + rename; see atomic_file.h.
#include "atomic_file.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "qlc/reports/report.h"

namespace qlc::reports {

namespace fs = std::filesystem;

void write_file_atomically(const std::string& path_text,
                           const std::function<void(std::ostream&)>& fill) {
  const fs::path path = path_text;
  std::error_code ec;
  if (path.has_parent_path()) {
    fs::create_directories(path.parent_path(), ec);
    if (ec) {
      throw ReportError(path.parent_path().string() + ": cannot create the folder: " + ec.message());
    }
  }
  // In the target's folder: rename is atomic there, so a reader never sees half a file.
  const fs::path tmp = path.string() + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw ReportError(tmp.string() + ": cannot write");
    try {
      fill(out);
    } catch (...) {
      out.close();
      fs::remove(tmp, ec);
      throw;
    }
    out.flush();
    if (!out) {
      out.close();
      fs::remove(tmp, ec);
      throw ReportError(tmp.string() + ": write failed");
    }
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw ReportError(path.string() + ": cannot replace: " + ec.message());
  }
}

}  // namespace qlc::reports
