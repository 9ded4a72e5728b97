// Finding the files the peer generators wrote ($QLC_PEER_DIR), for the *_peer_test.cc binaries.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace qlc::testing {

// Every file in $QLC_PEER_DIR whose name starts with `prefix`, sorted. Fails the test (fatal)
// when the directory is unset or holds none: the peer comparison must never pass vacuously.
inline std::vector<std::string> peer_files(const std::string& prefix) {
  std::vector<std::string> out;
  const char* dir = std::getenv("QLC_PEER_DIR");
  if (dir == nullptr) {
    ADD_FAILURE() << "QLC_PEER_DIR is not set: run through ctest, which generates the peer files first";
    return out;
  }
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) == 0) out.push_back(entry.path().string());
  }
  std::sort(out.begin(), out.end());
  if (out.empty()) ADD_FAILURE() << "no '" << prefix << "*' files in " << dir << " (did the generator run?)";
  return out;
}

}  // namespace qlc::testing
