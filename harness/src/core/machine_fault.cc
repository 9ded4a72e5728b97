#include "qlc/harness/machine_fault.h"

#include <cerrno>
#include <cstring>

namespace qlc::harness {
namespace {

constexpr const char* kDiskFullPrefix = "disk full: ";
constexpr const char* kUnwritablePrefix = "folder not writable: ";

}  // namespace

StorageFault storage_fault_of(int errno_value) {
  switch (errno_value) {
    case ENOSPC:
    case EDQUOT:
    case EFBIG:  // the file size limit (RLIMIT_FSIZE): as full as the disk for this run
      return StorageFault::kDiskFull;
    case EROFS:
    case EACCES:
    case EPERM:
      return StorageFault::kUnwritable;
    default:
      return StorageFault::kNone;
  }
}

std::string storage_fault_message(StorageFault fault, const std::string& what, int errno_value) {
  const std::string prefix = fault == StorageFault::kDiskFull ? kDiskFullPrefix
                             : fault == StorageFault::kUnwritable ? kUnwritablePrefix
                                                                  : "";
  return prefix + what + ": " + std::strerror(errno_value);
}

bool is_disk_full(const Record& r) {
  return r.outcome == Outcome::kMachineFault && r.message.rfind(kDiskFullPrefix, 0) == 0;
}

}  // namespace qlc::harness
