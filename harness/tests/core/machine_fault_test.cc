// Which write errors are the machine's fault (machine_fault) rather than a bug of ours.
#include "qlc/harness/machine_fault.h"

#include <cerrno>

#include <gtest/gtest.h>

namespace qlc::harness {
namespace {

TEST(StorageFault, FullAndUnwritableErrnoValues) {
  // write(2): ENOSPC no room, EDQUOT quota, EFBIG past RLIMIT_FSIZE; open(2)/mkdir(2): EROFS,
  // EACCES, EPERM refused.
  for (int e : {ENOSPC, EDQUOT, EFBIG}) EXPECT_EQ(storage_fault_of(e), StorageFault::kDiskFull) << e;
  for (int e : {EROFS, EACCES, EPERM}) EXPECT_EQ(storage_fault_of(e), StorageFault::kUnwritable) << e;
  for (int e : {0, EINVAL, ENOENT, EBADF}) EXPECT_EQ(storage_fault_of(e), StorageFault::kNone) << e;
}

TEST(StorageFault, OnlyADiskFullMachineFaultStopsARun) {
  Record r;
  r.outcome = Outcome::kMachineFault;
  r.message = StorageFaultError(StorageFault::kDiskFull, "writing x", ENOSPC).what();
  EXPECT_EQ(r.message, "disk full: writing x: No space left on device");
  EXPECT_TRUE(is_disk_full(r));
  r.message = StorageFaultError(StorageFault::kUnwritable, "writing x", EROFS).what();
  EXPECT_FALSE(is_disk_full(r));
  r.message = "disk full: writing x: No space left on device";
  r.outcome = Outcome::kCrash;  // a case's own message saying so is not the run's evidence
  EXPECT_FALSE(is_disk_full(r));
}

}  // namespace
}  // namespace qlc::harness
