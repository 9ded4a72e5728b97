#include "fresh_output.h"

#include <ATen/ops/empty.h>

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace qlc::kernels::detail {
namespace {

constexpr uintptr_t kHugePage = uintptr_t{1} << 21;
// Below this, the few faults saved do not pay for the system call.
constexpr int64_t kMinHugeBytes = int64_t{4} << 20;

}  // namespace

at::Tensor fresh_output(at::IntArrayRef shape, const at::TensorOptions& options) {
  at::Tensor out = at::empty(shape, options);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const int64_t bytes = out.numel() * static_cast<int64_t>(out.element_size());
  if (out.device().is_cpu() && bytes >= kMinHugeBytes) {
    // Only whole huge pages inside the buffer; a refusal (THP off) changes nothing but speed.
    const auto begin = reinterpret_cast<uintptr_t>(out.data_ptr());
    const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
    const uintptr_t last = (begin + static_cast<uintptr_t>(bytes)) & ~(kHugePage - 1);
    if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
#endif
  return out;
}

}  // namespace qlc::kernels::detail
