// The machine's faults that are neither a verdict on the settings nor a bug of qlora-compat: a
// full disk (or quota, or file size limit), a folder that cannot be written. A case cut short by
// one is recorded as machine_fault (see outcome.h); a full disk also stops the run, since every
// case after it would fail the same way.
#pragma once

#include <stdexcept>
#include <string>

#include "qlc/harness/record.h"

namespace qlc::harness {

enum class StorageFault { kNone, kDiskFull, kUnwritable };

// ENOSPC, EDQUOT, EFBIG: kDiskFull; EROFS, EACCES, EPERM: kUnwritable; anything else: kNone.
StorageFault storage_fault_of(int errno_value);

// "disk full: WHAT: No space left on device" / "folder not writable: WHAT: Read-only file system".
// The prefixes are how a record says which fault it was (is_disk_full).
std::string storage_fault_message(StorageFault fault, const std::string& what, int errno_value);

// A write that failed because of the machine; run_case records it as machine_fault.
class StorageFaultError : public std::runtime_error {
 public:
  StorageFaultError(StorageFault fault, const std::string& what, int errno_value)
      : std::runtime_error(storage_fault_message(fault, what, errno_value)), fault_(fault) {}
  StorageFault fault() const { return fault_; }

 private:
  StorageFault fault_;
};

// A machine_fault record whose cause is a full disk: the run stops after it.
bool is_disk_full(const Record& r);

}  // namespace qlc::harness
