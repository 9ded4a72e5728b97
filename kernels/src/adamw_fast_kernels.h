// Private to the fast CPU path of the AdamW steps (adamw_fast.cc): the ISA-specific block-range
// kernels of the 8-bit step beyond the AVX2 ones in adamw_fast.cc.
#pragma once

#include <cstdint>

#include "blockwise_fast_kernels.h"
#include "qlc/kernels/adamw.h"

namespace qlc::kernels::detail {

// The maps of one 8-bit step.
struct AdamW8bitMaps {
  const DynamicMap8* m;
  const DynamicMap8* v;
  const uint8_t* lut_m;  // bnb_library_lut of the default maps; null for maps given by the caller
  const uint8_t* lut_v;
};

#if QLC_FAST_HAVE_AVX2
// Whether adamw_8bit_blocks_avx512 runs here: the CPU has AVX-512 F/BW/VL/DQ, VBMI and GFNI
// (Ice Lake, Zen 4 and later) and the default maps' search tables passed their checks.
bool adamw_8bit_avx512_usable();

// Blocks [b0, b1) of the 8-bit step over n elements (the last block may be short): the same bits
// as adamw_8bit_states_reference.
template <class P, class G>
void adamw_8bit_blocks_avx512(P* p, const G* g, const AdamW8bitStates& st, int64_t n,
                              const AdamW8bitMaps& maps, int64_t b0, int64_t b1,
                              const AdamWScalars& s);
#endif

}  // namespace qlc::kernels::detail
