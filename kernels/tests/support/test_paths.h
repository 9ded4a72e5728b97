// Where tests find data that lives outside the build tree.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace qlc::testing {

// bitsandbytes' golden vectors: kernels/tests/goldens/bnb-4bit in the checkout (a copy of the
// shared set, see its README), or $QLC_GOLDENS_DIR. Missing goldens are an error, never a skip.
inline std::filesystem::path goldens_dir() {
  if (const char* env = std::getenv("QLC_GOLDENS_DIR")) return env;
  const std::filesystem::path dir =
      std::filesystem::path(QLC_SOURCE_DIR) / "kernels" / "tests" / "goldens" / "bnb-4bit";
  if (!std::filesystem::is_directory(dir)) {
    throw std::runtime_error("golden vectors not found at " + dir.string() +
                             " (set QLC_GOLDENS_DIR to their folder)");
  }
  return dir;
}

}  // namespace qlc::testing
