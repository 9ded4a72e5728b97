// AVX-512 kernels of 4-bit blockwise quantization over whole blocks (blocksize a multiple of 32).
//  - fp32 input: the AVX2 kernel's 4-step binary search over the 15 midpoints, 16 lanes wide with
//    mask registers; same arithmetic as the reference (one multiply by 1/absmax, then compares).
//  - bf16 / fp16 input: the search runs on the 16-bit inputs themselves, 32 lanes wide, with no
//    conversion or multiply per element. Per block, each midpoint b becomes the smallest 16-bit
//    value T whose reference product fl(T * (1/absmax)) exceeds b (found by trying the candidates
//    next to b * absmax with the reference's own multiply); since fl(x * inv) never decreases as x
//    grows, "x > b after scaling" is then exactly "x >= T", compared as integers in value order.
//    A block whose candidates do not bracket T, or that holds NaN or Inf, takes the fp32 kernel.
//    Each thread remembers the thresholds by the block's largest magnitude pattern (ThresholdMemo):
//    a weight's blocks share few of those, so most blocks only look them up.
// Either way the codes are the reference's bit for bit. Dequantization and the 8-bit blockwise
// kernels stay AVX2: they already move data at memory speed (see ci/bench.sh). The 8-bit AdamW
// step has AVX-512 code of its own (adamw_8bit_avx512.cc).
#include "blockwise_fast_avx2.h"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <memory>
#include <type_traits>

#if QLC_FAST_HAVE_AVX2

#define QLC_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#define QLC_AVX512BW __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

// GCC 12 warns about the undefined pass-through operand inside its own AVX-512 intrinsics
// (_mm512_undefined_*; GCC bug 105593), not about this code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace qlc::kernels::detail {
namespace {

QLC_AVX512 inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
QLC_AVX512 inline __m512 load16(const Bf16* p) {  // exact: bf16 is an fp32's high half
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
QLC_AVX512 inline __m512 load16(const Fp16* p) {  // exact widening
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// max |x| over a float block with block_absmax's semantics: NaN never wins (the accumulator is
// max_ps's second operand), so the result is non-negative and not NaN, and the order of the
// reductions cannot change it. 16-bit inputs keep the AVX2 kernel's integer maximum over their
// bit patterns, which needs no conversion.
QLC_AVX512 float block_absmax16(const float* x, int64_t len) {
  const __m512i magnitude = _mm512_set1_epi32(0x7FFFFFFF);
  auto abs16 = [&](const float* p) QLC_AVX512 {
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(load16(p)), magnitude));
  };
  __m512 m0 = _mm512_setzero_ps(), m1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= len; i += 32) {
    m0 = _mm512_max_ps(abs16(x + i), m0);
    m1 = _mm512_max_ps(abs16(x + i + 16), m1);
  }
  float r = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
  for (; i < len; ++i) {
    const float a = x[i] < 0.0f ? -x[i] : x[i];
    r = a > r ? a : r;
  }
  return r;
}
QLC_AVX512 float block_absmax16(const Bf16* x, int64_t len) { return avx2::block_absmax(x, len); }
QLC_AVX512 float block_absmax16(const Fp16* x, int64_t len) { return avx2::block_absmax(x, len); }

// The midpoints for the search (see RankTables in blockwise_4bit_fast_avx2.cc): step 8 probes
// bounds[7], step 4 bounds[3] or bounds[11], step 2 bounds[r + 1] (r in 0, 4, 8, 12), step 1
// bounds[r] for even r.
struct RankTables512 {
  __m512 b7, b3, b11, step2, step1;
};

QLC_AVX512 RankTables512 rank_tables512(const Codebook4& cb) {
  const float* b = cb.bounds;
  return {_mm512_set1_ps(b[7]), _mm512_set1_ps(b[3]), _mm512_set1_ps(b[11]),
          _mm512_setr_ps(b[1], b[5], b[9], b[13], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
          _mm512_setr_ps(b[0], b[2], b[4], b[6], b[8], b[10], b[12], b[14], 0, 0, 0, 0, 0, 0, 0, 0)};
}

// Number of midpoints strictly below s (a midpoint itself goes to the lower code), 0..15.
QLC_AVX512 inline __m512i rank15(__m512 s, const RankTables512& t) {
  const __mmask16 m8 = _mm512_cmp_ps_mask(s, t.b7, _CMP_GT_OQ);
  __m512i r = _mm512_maskz_mov_epi32(m8, _mm512_set1_epi32(8));
  const __mmask16 m4 = _mm512_cmp_ps_mask(s, _mm512_mask_blend_ps(m8, t.b3, t.b11), _CMP_GT_OQ);
  r = _mm512_mask_or_epi32(r, m4, r, _mm512_set1_epi32(4));
  const __m512 b2 = _mm512_permutexvar_ps(_mm512_srli_epi32(r, 2), t.step2);
  r = _mm512_mask_or_epi32(r, _mm512_cmp_ps_mask(s, b2, _CMP_GT_OQ), r, _mm512_set1_epi32(2));
  const __m512 b1 = _mm512_permutexvar_ps(_mm512_srli_epi32(r, 1), t.step1);
  return _mm512_mask_add_epi32(r, _mm512_cmp_ps_mask(s, b1, _CMP_GT_OQ), r, _mm512_set1_epi32(1));
}

template <class In>
QLC_AVX512 void quantize_blocks(const Codebook4& cb, const In* x, int64_t blocksize, int64_t b0,
                                int64_t b1, uint8_t* packed, float* absmax) {
  const RankTables512 bounds = rank_tables512(cb);
  const __m128i order = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cb.order));
  const __m128i nibble_weights = _mm_set1_epi16(0x0110);  // even element * 16 + odd element
  for (int64_t b = b0; b < b1; ++b) {
    const In* xb = x + b * blocksize;
    uint8_t* pb = packed + b * blocksize / 2;
    const float am = block_absmax16(xb, blocksize);
    absmax[b] = am;  // stored_absmax of a full block
    const __m512 inv = _mm512_set1_ps(1.0f / (am > kMinAbsmax ? am : kMinAbsmax));
    for (int64_t i = 0; i < blocksize; i += 32) {
      // As in the AVX2 kernel, scale_to_unit's clamp to [-1, 1] cannot change a rank.
      const __m128i r0 = _mm512_cvtepi32_epi8(rank15(_mm512_mul_ps(load16(xb + i), inv), bounds));
      const __m128i r1 =
          _mm512_cvtepi32_epi8(rank15(_mm512_mul_ps(load16(xb + i + 16), inv), bounds));
      const __m128i p0 = _mm_maddubs_epi16(_mm_shuffle_epi8(order, r0), nibble_weights);
      const __m128i p1 = _mm_maddubs_epi16(_mm_shuffle_epi8(order, r1), nibble_weights);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(pb + i / 2), _mm_packus_epi16(p0, p1));
    }
  }
}


// ---- bf16 / fp16 inputs: the search on 16-bit values -------------------------------------------

// The 16-bit formats: 16 patterns in a 256-bit register <-> 16 fp32 values.
template <class Half>
struct Half16;
template <>
struct Half16<Bf16> {
  static constexpr int kInfBits = 0x7F80;
  QLC_AVX512BW static __m512 widen(__m256i p) {  // exact
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(p), 16));
  }
  QLC_AVX512BW static __m256i near(__m512 f) {  // a pattern near f (truncated): a starting point
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(f), 16));
  }
  QLC_AVX512BW static float value(int bits) {  // exact, as to_float
    return _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(bits << 16)));
  }
};
template <>
struct Half16<Fp16> {
  static constexpr int kInfBits = 0x7C00;
  QLC_AVX512BW static __m512 widen(__m256i p) { return _mm512_cvtph_ps(p); }
  QLC_AVX512BW static __m256i near(__m512 f) {
    return _mm512_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  QLC_AVX512BW static float value(int bits) {  // exact, as to_float (NaN blocks never use it)
    return _cvtsh_ss(static_cast<unsigned short>(bits));
  }
};

// Sign-magnitude 16-bit patterns <-> int16 in value order (+0 -> 0, -0 -> -1, a negative x ->
// -1 - |x|'s pattern); the map is its own inverse.
QLC_AVX512BW inline __m256i value_order16(__m256i x) {
  return _mm256_xor_si256(x, _mm256_srli_epi16(_mm256_srai_epi16(x, 15), 1));
}
QLC_AVX512BW inline __m512i value_order16(__m512i x) {
  return _mm512_xor_si512(x, _mm512_srli_epi16(_mm512_srai_epi16(x, 15), 1));
}

// The largest magnitude pattern of a block (NaN patterns included: above kInfBits).
template <class Half>
QLC_AVX512BW inline int max_magnitude_bits(const Half* x, int64_t len) {
  const __m512i magnitude = _mm512_set1_epi16(0x7FFF);
  __m512i m = _mm512_setzero_si512();
  for (int64_t i = 0; i < len; i += 32)
    m = _mm512_max_epu16(m, _mm512_and_si512(_mm512_loadu_si512(x + i), magnitude));
  __m256i m256 = _mm256_max_epu16(_mm512_castsi512_si256(m), _mm512_extracti64x4_epi64(m, 1));
  const __m128i m128 = _mm_max_epu16(_mm256_castsi256_si128(m256), _mm256_extracti128_si256(m256, 1));
  // Horizontal max through minpos on the complement.
  return 0xFFFF - _mm_extract_epi16(_mm_minpos_epu16(_mm_xor_si128(m128, _mm_set1_epi16(-1))), 0);
}

// The 15 thresholds of one block for the integer search, as T - 1 (x > T - 1 <=> x >= T) in value
// order, words 0..14 (word 15 repeats 14); false when the candidates do not bracket T.
template <class Half>
QLC_AVX512BW inline bool block_thresholds(__m512 bounds, float divisor, float inv, __m256i* out) {
  const __m512 scale = _mm512_set1_ps(inv);
  // Near the real b / inv: the exact T is c or the next value (b * divisor and fl(x * inv) are
  // within 2^-23 relative of it, 16-bit values 2^-11 relative apart or more); that the answer
  // changes there is checked, so a block where this reasoning fails is only slower.
  const __m256i c = value_order16(Half16<Half>::near(_mm512_mul_ps(bounds, _mm512_set1_ps(divisor))));
  const __m256i one = _mm256_set1_epi16(1);
  auto passes = [&](__m256i o) QLC_AVX512BW {  // fl(value * inv) > b, the reference's compare
    const __m512 v = Half16<Half>::widen(value_order16(o));
    return _mm512_cmp_ps_mask(_mm512_mul_ps(v, scale), bounds, _CMP_GT_OQ);
  };
  // Where c passes, T = c if c - 1 fails; where it fails, T = c + 1 if c + 1 passes. So the
  // second candidate must give the opposite answer in every lane.
  const __mmask16 at_c = passes(c);
  const __m256i below = _mm256_sub_epi16(c, one);
  const __m256i second = _mm256_mask_mov_epi16(_mm256_add_epi16(c, one), at_c, below);
  if (passes(second) != static_cast<__mmask16>(~at_c)) return false;
  // Stored as T - 1: c - 1 where c passes, else c.
  *out = _mm256_mask_mov_epi16(c, at_c, below);
  return true;
}

// A block's thresholds depend only on its largest magnitude pattern (and the code book), and
// the blocks of a weight share few of those (normal weights in blocks of 64: a few hundred bf16
// patterns, under two thousand fp16 ones), so each thread keeps the thresholds it computed in a
// direct-mapped table indexed by that pattern: most blocks then skip the threshold search. An
// entry is one 32-byte vector: the 15 thresholds and, in word 15 (which the search never reads),
// the pattern + 1 it belongs to (0: empty). Blocks whose thresholds cannot be found this way are
// not entered.
struct ThresholdMemo {
  static constexpr int kSlots = 2048;
  const Codebook4* book = nullptr;
  int kind = -1;  // which 16-bit format the entries are for
  __m256i entry[kSlots];
  ThresholdMemo() { clear(); }
  void clear() { std::memset(static_cast<void*>(entry), 0, sizeof entry); }
};

ThresholdMemo& threshold_memo(const Codebook4& cb, int kind) {
  thread_local std::unique_ptr<ThresholdMemo> memo;
  if (!memo) memo = std::make_unique<ThresholdMemo>();
  if (memo->book != &cb || memo->kind != kind) {
    memo->clear();
    memo->book = &cb;
    memo->kind = kind;
  }
  return *memo;
}

template <class Half>
QLC_AVX512BW void quantize_blocks_16bit(const Codebook4& cb, const Half* x, int64_t blocksize,
                                        int64_t b0, int64_t b1, uint8_t* packed, float* absmax) {
  float bounds16[16];
  for (int k = 0; k < 15; ++k) bounds16[k] = cb.bounds[k];
  bounds16[15] = cb.bounds[14];
  const __m512 bounds = _mm512_loadu_ps(bounds16);
  const __m256i order =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(cb.order)));
  const __m256i nibble_weights = _mm256_set1_epi16(0x0110);  // even element * 16 + odd element
  // Word indexes of the search's steps (see RankTables512): 7, 3, 11; 1 5 9 13; 0 2 ... 14.
  alignas(64) static const int16_t kStep2[32] = {1, 5, 9, 13};
  alignas(64) static const int16_t kStep1[32] = {0, 2, 4, 6, 8, 10, 12, 14};
  const __m512i step2_index = _mm512_load_si512(kStep2), step1_index = _mm512_load_si512(kStep1);
  const __m512i eight = _mm512_set1_epi16(8), four = _mm512_set1_epi16(4);
  const __m512i two = _mm512_set1_epi16(2), one = _mm512_set1_epi16(1);
  ThresholdMemo& memo = threshold_memo(cb, Half16<Half>::kInfBits);
  // Groups of blocks in two passes: first every block's thresholds (independent chains the CPU
  // overlaps), then the searches, so that no search waits for its own block's thresholds.
  constexpr int64_t kGroup = 16;
  __m256i thresholds[kGroup];
  bool fast[kGroup];
  for (int64_t g0 = b0; g0 < b1; g0 += kGroup) {
    const int64_t g1 = std::min(b1, g0 + kGroup);
    for (int64_t b = g0; b < g1; ++b) {
      const int bits = max_magnitude_bits(x + b * blocksize, blocksize);
      const float am = Half16<Half>::value(bits);
      absmax[b] = am;  // no NaN: the largest magnitude is block_absmax's result
      if (bits >= Half16<Half>::kInfBits) {  // NaN or Inf
        fast[b - g0] = false;
        continue;
      }
      __m256i& entry = memo.entry[bits & (ThresholdMemo::kSlots - 1)];
      fast[b - g0] = true;
      if (_mm256_extract_epi16(entry, 15) == bits + 1) {
        thresholds[b - g0] = entry;
        continue;
      }
      const float divisor = am > kMinAbsmax ? am : kMinAbsmax;  // as scale_to_unit
      fast[b - g0] = block_thresholds<Half>(bounds, divisor, 1.0f / divisor, &thresholds[b - g0]);
      if (fast[b - g0]) entry = _mm256_insert_epi16(thresholds[b - g0], bits + 1, 15);
    }
    for (int64_t b = g0; b < g1; ++b) {
      if (!fast[b - g0]) {
        quantize_blocks(cb, x, blocksize, b, b + 1, packed, absmax);  // rewrites absmax[b] too
        continue;
      }
      const Half* xb = x + b * blocksize;
      uint8_t* pb = packed + b * blocksize / 2;
      const __m512i t = _mm512_castsi256_si512(thresholds[b - g0]);
      const __m512i t7 = _mm512_permutexvar_epi16(_mm512_set1_epi16(7), t);
      const __m512i t3 = _mm512_permutexvar_epi16(_mm512_set1_epi16(3), t);
      const __m512i t11 = _mm512_permutexvar_epi16(_mm512_set1_epi16(11), t);
      const __m512i step2 = _mm512_permutexvar_epi16(step2_index, t);
      const __m512i step1 = _mm512_permutexvar_epi16(step1_index, t);
      for (int64_t i = 0; i < blocksize; i += 32) {
        const __m512i v = value_order16(_mm512_loadu_si512(xb + i));
        const __mmask32 m8 = _mm512_cmpgt_epi16_mask(v, t7);
        __m512i r = _mm512_maskz_mov_epi16(m8, eight);
        const __m512i b4 = _mm512_mask_blend_epi16(m8, t3, t11);
        r = _mm512_mask_add_epi16(r, _mm512_cmpgt_epi16_mask(v, b4), r, four);
        const __m512i b2 = _mm512_permutexvar_epi16(_mm512_srli_epi16(r, 2), step2);
        r = _mm512_mask_add_epi16(r, _mm512_cmpgt_epi16_mask(v, b2), r, two);
        const __m512i b1v = _mm512_permutexvar_epi16(_mm512_srli_epi16(r, 1), step1);
        r = _mm512_mask_add_epi16(r, _mm512_cmpgt_epi16_mask(v, b1v), r, one);
        const __m256i codes = _mm256_shuffle_epi8(order, _mm512_cvtepi16_epi8(r));
        const __m256i pairs = _mm256_maddubs_epi16(codes, nibble_weights);  // 16 words <= 255
        _mm_storeu_si128(reinterpret_cast<__m128i*>(pb + i / 2), _mm256_cvtepi16_epi8(pairs));
      }
    }
  }
}

}  // namespace

template <class In>
void quantize_4bit_blocks_avx512(const Codebook4& cb, const In* x, int64_t blocksize, int64_t b0,
                                 int64_t b1, uint8_t* packed, float* absmax) {
  if constexpr (std::is_same_v<In, float>) {
    quantize_blocks(cb, x, blocksize, b0, b1, packed, absmax);
  } else {
    quantize_blocks_16bit(cb, x, blocksize, b0, b1, packed, absmax);
  }
}

template void quantize_4bit_blocks_avx512<float>(const Codebook4&, const float*, int64_t, int64_t,
                                                 int64_t, uint8_t*, float*);
template void quantize_4bit_blocks_avx512<Bf16>(const Codebook4&, const Bf16*, int64_t, int64_t,
                                                int64_t, uint8_t*, float*);
template void quantize_4bit_blocks_avx512<Fp16>(const Codebook4&, const Fp16*, int64_t, int64_t,
                                                int64_t, uint8_t*, float*);

}  // namespace qlc::kernels::detail

#pragma GCC diagnostic pop

#endif  // QLC_FAST_HAVE_AVX2
