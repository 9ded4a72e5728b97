// Private AVX2 helpers of the fast CPU path: exact fp32 widening of the input types and
// conversions to the output types with the same bits as float_bits.h. Included only by the
// blockwise_*_fast_avx2.cc files; every function carries the AVX2 target attribute, so the rest
// of the library is compiled for the baseline ISA and runs anywhere.
#pragma once

#include "blockwise_fast_kernels.h"

#if QLC_FAST_HAVE_AVX2
#include <immintrin.h>

#include <cstring>

#define QLC_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace qlc::kernels::detail::avx2 {

// --- 8 inputs widened to fp32 (exact: bf16 is the high half of an fp32, F16C widens exactly;
// F16C quiets a signalling NaN where to_float does not, which no quantizer can observe since
// NaN never raises an absmax and compares false either way).
QLC_AVX2 inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
QLC_AVX2 inline __m256 load8(const Bf16* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
QLC_AVX2 inline __m256 load8(const Fp16* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// --- fp32 to 16-bit patterns, 8 at a time, in order.
// to_bf16: round to nearest even, any NaN -> 0x7FC0.
QLC_AVX2 inline __m128i to_bf16x8(__m256 f) {
  const __m256i u = _mm256_castps_si256(f);
  const __m256i abs = _mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF));
  const __m256i nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7F800000));
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb);
  r = _mm256_srli_epi32(r, 16);
  r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), nan);
  const __m128i lo = _mm256_castsi256_si128(r);
  const __m128i hi = _mm256_extracti128_si256(r, 1);
  return _mm_packus_epi32(lo, hi);  // values <= 0xFFFF: no saturation
}

// to_fp16: F16C rounds like to_fp16 for every non-NaN; NaN is rewritten to sign | 0x7E00 since
// F16C keeps payload bits that to_fp16 drops.
QLC_AVX2 inline __m128i to_fp16x8(__m256 f) {
  __m128i h = _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT);
  const int nan = _mm256_movemask_ps(_mm256_cmp_ps(f, f, _CMP_UNORD_Q));
  if (__builtin_expect(nan != 0, 0)) {
    uint16_t v[8];
    _mm_storeu_si128(reinterpret_cast<__m128i*>(v), h);
    for (int l = 0; l < 8; ++l)
      if (nan & (1 << l)) v[l] = static_cast<uint16_t>((v[l] & 0x8000u) | 0x7E00u);
    h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(v));
  }
  return h;
}

// --- 8 fp32 values stored as Out (streaming stores need `p` aligned to the store's width).
template <bool kStream>
QLC_AVX2 inline void store8(float* p, __m256 f) {
  if (kStream) {
    _mm256_stream_ps(p, f);
  } else {
    _mm256_storeu_ps(p, f);
  }
}
template <bool kStream>
QLC_AVX2 inline void store_16bit(void* p, __m128i h) {
  if (kStream) {
    _mm_stream_si128(static_cast<__m128i*>(p), h);
  } else {
    _mm_storeu_si128(static_cast<__m128i*>(p), h);
  }
}
template <bool kStream>
QLC_AVX2 inline void store8(Bf16* p, __m256 f) {
  store_16bit<kStream>(p, to_bf16x8(f));
}
template <bool kStream>
QLC_AVX2 inline void store8(Fp16* p, __m256 f) {
  store_16bit<kStream>(p, to_fp16x8(f));
}

// 16 fp32 values as 16-bit patterns of Out, in order.
QLC_AVX2 inline __m256i to_16bit_x16(__m256 f0, __m256 f1, Bf16*) {
  return _mm256_set_m128i(to_bf16x8(f1), to_bf16x8(f0));
}
QLC_AVX2 inline __m256i to_16bit_x16(__m256 f0, __m256 f1, Fp16*) {
  return _mm256_set_m128i(to_fp16x8(f1), to_fp16x8(f0));
}

// --- max |x| over a block's `len` elements, with block_absmax's semantics: NaN never wins (the
// accumulator is max_ps's second operand) and the result is a non-negative non-NaN value, so
// the order of the lane and tail reductions cannot change it.
QLC_AVX2 inline float block_absmax(const float* x, int64_t len) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m0 = _mm256_setzero_ps(), m1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= len; i += 16) {
    m0 = _mm256_max_ps(_mm256_andnot_ps(sign, load8(x + i)), m0);
    m1 = _mm256_max_ps(_mm256_andnot_ps(sign, load8(x + i + 8)), m1);
  }
  for (; i + 8 <= len; i += 8) m0 = _mm256_max_ps(_mm256_andnot_ps(sign, load8(x + i)), m0);
  m0 = _mm256_max_ps(m0, m1);
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(m0), _mm256_extractf128_ps(m0, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  float r = _mm_cvtss_f32(m);
  for (; i < len; ++i) {
    const float v = to_float(x[i]);
    const float a = v < 0.0f ? -v : v;
    r = a > r ? a : r;
  }
  return r;
}

// 16-bit inputs: |x| is the pattern without its sign bit, and for non-NaN values the integer
// order of those patterns is the order of the values; NaN patterns (above infinity's) are
// dropped, as block_absmax ignores NaN. Sixteen elements per step, no conversion.
template <uint16_t kInfBits>
QLC_AVX2 inline int64_t max_abs_bits16(const uint16_t* x, int64_t len, uint16_t* bits) {
  const __m256i magnitude = _mm256_set1_epi16(0x7FFF);
  const __m256i inf = _mm256_set1_epi16(static_cast<short>(kInfBits));
  __m256i m = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 16 <= len; i += 16) {
    __m256i a = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)),
                                 magnitude);
    a = _mm256_andnot_si256(_mm256_cmpgt_epi16(a, inf), a);  // both sides < 0x8000
    m = _mm256_max_epi16(m, a);
  }
  // Horizontal max through minpos on the complement (all values are non-negative).
  const __m128i m128 = _mm_max_epi16(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
  const __m128i all = _mm_set1_epi16(-1);
  *bits = static_cast<uint16_t>(
      0xFFFF - _mm_extract_epi16(_mm_minpos_epu16(_mm_xor_si128(m128, all)), 0));
  return i;
}

template <class Half, uint16_t kInfBits>
QLC_AVX2 inline float block_absmax_16bit(const Half* x, int64_t len) {
  uint16_t bits = 0;
  int64_t i = max_abs_bits16<kInfBits>(reinterpret_cast<const uint16_t*>(x), len, &bits);
  float r = to_float(Half{bits});
  for (; i < len; ++i) {
    const float v = to_float(x[i]);
    const float a = v < 0.0f ? -v : v;
    r = a > r ? a : r;
  }
  return r;
}

QLC_AVX2 inline float block_absmax(const Bf16* x, int64_t len) {
  return block_absmax_16bit<Bf16, 0x7F80>(x, len);
}
QLC_AVX2 inline float block_absmax(const Fp16* x, int64_t len) {
  return block_absmax_16bit<Fp16, 0x7C00>(x, len);
}

}  // namespace qlc::kernels::detail::avx2

#endif  // QLC_FAST_HAVE_AVX2
