// Private to the fast CPU path: whether a run of values holds a NaN or an Inf. The 4-bit
// quantizer asks it of each cache-sized run of blocks just before quantizing them, so refusing
// non-finite weights costs no second pass over memory.
#pragma once

#include <cstdint>

#include "qlc/kernels/blockwise_fast.h"
#include "qlc/kernels/float_bits.h"

namespace qlc::kernels::detail {

// True when one of x[0, n) is NaN or +-Inf: its magnitude bits reach the infinity pattern's.
// `isa` below kAvx2 scans with scalar code (same answer).
bool has_non_finite(const float* x, int64_t n, CpuIsa isa);
bool has_non_finite(const Bf16* x, int64_t n, CpuIsa isa);
bool has_non_finite(const Fp16* x, int64_t n, CpuIsa isa);

}  // namespace qlc::kernels::detail
