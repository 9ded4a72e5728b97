// AVX-512 kernel of 4-bit blockwise quantization over whole blocks (blocksize a multiple of 32):
// the AVX2 kernel's 4-step binary search over the 15 midpoints, 16 lanes wide with mask
// registers. Same arithmetic as the reference (one multiply by 1/absmax, then compares), so the
// codes are the reference's bit for bit. Dequantization and the 8-bit kernels stay AVX2: they
// already move data at memory speed (see ci/bench.sh).
#include "blockwise_fast_avx2.h"

#if QLC_FAST_HAVE_AVX2

#define QLC_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))

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

}  // namespace

template <class In>
void quantize_4bit_blocks_avx512(const Codebook4& cb, const In* x, int64_t blocksize, int64_t b0,
                                 int64_t b1, uint8_t* packed, float* absmax) {
  quantize_blocks(cb, x, blocksize, b0, b1, packed, absmax);
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
