// Fresh outputs of the allocating tensor-API forms. A new CPU buffer costs its first touch: one
// page fault per 4 KiB page, more than the dequantization that fills it (about 50 ms per 64 MiB
// on a loaded 2-core EPYC against 4 ms for the kernel). Large CPU outputs are marked for
// transparent huge pages (madvise, Linux; what LibTorch's THP_MEM_ALLOC_ENABLE does for every
// allocation), which cuts that to less than half. Callers that repeat should reuse an output
// with the *_out forms instead.
#pragma once

#include <ATen/core/Tensor.h>

namespace qlc::kernels::detail {

at::Tensor fresh_output(at::IntArrayRef shape, const at::TensorOptions& options);

}  // namespace qlc::kernels::detail
