// Private to the fast CPU path: how the dispatchers (blockwise_*bit_fast.cc) split work over
// threads, and the ISA-specific block-range kernels they call (blockwise_*bit_fast_avx2.cc).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>

#include "qlc/kernels/blockwise_fast.h"
#include "qlc/kernels/parallel.h"

// The AVX2 kernels use GCC/Clang target attributes, so they exist on x86 with those compilers.
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define QLC_FAST_HAVE_AVX2 1
#else
#define QLC_FAST_HAVE_AVX2 0
#endif

namespace qlc::kernels::detail {

// A chunk smaller than this costs more to hand to a thread than to run (thread start ~20 us).
constexpr int64_t kMinChunkElements = int64_t{1} << 16;
// Outputs at least this large bypass the caches (streaming stores): they would not stay there
// anyway, and the stores then skip reading each line before writing it.
constexpr int64_t kStreamMinBytes = int64_t{1} << 20;

inline bool stream_output(const void* out, int64_t bytes, int64_t blocksize) {
  return bytes >= kStreamMinBytes && reinterpret_cast<uintptr_t>(out) % 32 == 0 &&
         blocksize % 32 == 0;
}

// Calls fn(b0, b1) on contiguous chunks covering blocks [0, blocks): parallel_for's one chunk per
// thread when chunks == 0, else exactly `chunks` chunks (empty ones skipped).
inline void for_block_chunks(int64_t blocks, int64_t blocksize, int64_t chunks,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (blocks <= 0) return;
  if (chunks <= 0) {
    parallel_for(blocks, std::max<int64_t>(1, kMinChunkElements / blocksize), fn);
    return;
  }
  const int64_t per_chunk = (blocks + chunks - 1) / chunks;
  parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t b0 = c * per_chunk;
      const int64_t b1 = std::min(blocks, b0 + per_chunk);
      if (b0 < b1) fn(b0, b1);
    }
  });
}

// bitsandbytes' compiled-library lookup table: code index of each of the 65,536 grid points
// (encode_8bit_bnb_library of the point), plus 3 zero bytes so that 4-byte gathers stay inside.
const uint8_t* bnb_library_lut(bool is_signed);

// encode_8bit_nearest by table. The fp32 values sharing their top 16 bits (sign, exponent, 7
// mantissa bits) form a bucket, and each dynamic map has at most one midpoint per bucket (checked
// when the table is built). Entry of bucket k: the number of midpoints below the whole bucket
// (bits 16-23); bit 31 set when a midpoint lies inside it, whose bits are then
// (k << 16) | (entry & 0xFFFF). Code of s = base + (that midpoint < s); NaN buckets hold 0.
const uint32_t* nearest_lut(bool is_signed);

#if QLC_FAST_HAVE_AVX2
// Full blocks [b0, b1); blocksize a multiple of 32.
template <class In>
void quantize_4bit_blocks_avx2(const Codebook4& cb, const In* x, int64_t blocksize, int64_t b0,
                               int64_t b1, uint8_t* packed, float* absmax);
// The same with AVX-512 (of the blockwise kernels only 4-bit quantization has AVX-512 code: see
// blockwise_4bit_fast_avx512.cc; the 8-bit AdamW step has its own, adamw_fast_kernels.h).
template <class In>
void quantize_4bit_blocks_avx512(const Codebook4& cb, const In* x, int64_t blocksize, int64_t b0,
                                 int64_t b1, uint8_t* packed, float* absmax);
template <class Out>
void dequantize_4bit_blocks_avx2(const Codebook4& cb, const uint8_t* packed, const float* absmax,
                                 int64_t blocksize, int64_t b0, int64_t b1, Out* out, bool stream);

// Blocks [b0, b1) of an n-element buffer (the last block may be short); any blocksize.
// `lut`: bnb_library_lut or nearest_lut of the map, as `search` needs.
template <class In>
void quantize_8bit_blocks_avx2(const DynamicMap8& map, const void* lut, const In* x, int64_t n,
                               int64_t blocksize, Search8 search, int64_t b0, int64_t b1,
                               uint8_t* out, float* absmax);
template <class Out>
void dequantize_8bit_blocks_avx2(const DynamicMap8& map, const uint8_t* q, const float* absmax,
                                 int64_t n, int64_t blocksize, int64_t b0, int64_t b1, Out* out,
                                 bool stream);
#endif

}  // namespace qlc::kernels::detail
