// AVX2 kernels of 4-bit blockwise quantization over whole blocks (blocksize a multiple of 32):
// 32 elements per step, i.e. 16 packed bytes. Each multiply is its own instruction (no FMA), so
// the fp32 values equal the scalar reference's.
#include "blockwise_fast_avx2.h"

#if QLC_FAST_HAVE_AVX2

namespace qlc::kernels::detail {
namespace {

using avx2::load8;

// The 15 ascending midpoints arranged for a 4-step binary search: step 8 probes bounds[7],
// step 4 bounds[3] or bounds[11], step 2 bounds[r + 1] for r in {0, 4, 8, 12}, step 1
// bounds[r] for even r. Far fewer instructions and registers than 15 compares.
struct RankTables {
  __m256 b7, b3, b11;
  __m256 step2;  // bounds[1], [5], [9], [13] at lanes 0..3
  __m256 step1;  // bounds[0], [2], ..., [14] at lanes 0..7
};

QLC_AVX2 inline RankTables rank_tables(const Codebook4& cb) {
  const float* b = cb.bounds;
  return {_mm256_set1_ps(b[7]), _mm256_set1_ps(b[3]), _mm256_set1_ps(b[11]),
          _mm256_setr_ps(b[1], b[5], b[9], b[13], 0.0f, 0.0f, 0.0f, 0.0f),
          _mm256_setr_ps(b[0], b[2], b[4], b[6], b[8], b[10], b[12], b[14])};
}

// encode_4bit's rank of `s`: how many midpoints are strictly below it (NaN: none). On ascending
// midpoints (codebook_4bit.cc sorts them; fast_cpu_test checks it) the binary search counts
// exactly what the reference's 15 compares count.
QLC_AVX2 inline __m256i rank15(__m256 s, const RankTables& t) {
  const __m256 m8 = _mm256_cmp_ps(s, t.b7, _CMP_GT_OQ);
  __m256i r = _mm256_and_si256(_mm256_castps_si256(m8), _mm256_set1_epi32(8));
  const __m256 m4 = _mm256_cmp_ps(s, _mm256_blendv_ps(t.b3, t.b11, m8), _CMP_GT_OQ);
  r = _mm256_or_si256(r, _mm256_and_si256(_mm256_castps_si256(m4), _mm256_set1_epi32(4)));
  const __m256 b2 = _mm256_permutevar8x32_ps(t.step2, _mm256_srli_epi32(r, 2));
  const __m256 m2 = _mm256_cmp_ps(s, b2, _CMP_GT_OQ);
  r = _mm256_or_si256(r, _mm256_and_si256(_mm256_castps_si256(m2), _mm256_set1_epi32(2)));
  const __m256 b1 = _mm256_permutevar8x32_ps(t.step1, _mm256_srli_epi32(r, 1));
  return _mm256_sub_epi32(r, _mm256_castps_si256(_mm256_cmp_ps(s, b1, _CMP_GT_OQ)));
}

// Ranks of 32 consecutive elements, as bytes in element order.
template <class In>
QLC_AVX2 inline __m256i ranks32(const In* x, __m256 inv, const RankTables& t) {
  const __m256i r0 = rank15(_mm256_mul_ps(load8(x), inv), t);
  const __m256i r1 = rank15(_mm256_mul_ps(load8(x + 8), inv), t);
  const __m256i r2 = rank15(_mm256_mul_ps(load8(x + 16), inv), t);
  const __m256i r3 = rank15(_mm256_mul_ps(load8(x + 24), inv), t);
  // packs/packus leave the four vectors' quarters interleaved; the permute restores the order.
  const __m256i r = _mm256_packus_epi16(_mm256_packs_epi32(r0, r1), _mm256_packs_epi32(r2, r3));
  return _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// bf16 widened by interleaving zero words under each value: one instruction per 8 values, but
// unpacklo takes elements 0-3 and 8-11 of 16, unpackhi 4-7 and 12-15.
QLC_AVX2 inline __m256 bf16_lo(__m256i v) {
  return _mm256_castsi256_ps(_mm256_unpacklo_epi16(_mm256_setzero_si256(), v));
}
QLC_AVX2 inline __m256 bf16_hi(__m256i v) {
  return _mm256_castsi256_ps(_mm256_unpackhi_epi16(_mm256_setzero_si256(), v));
}

template <>
QLC_AVX2 inline __m256i ranks32(const Bf16* x, __m256 inv, const RankTables& t) {
  const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 16));
  const __m256i r0 = rank15(_mm256_mul_ps(bf16_lo(v0), inv), t);
  const __m256i r1 = rank15(_mm256_mul_ps(bf16_hi(v0), inv), t);
  const __m256i r2 = rank15(_mm256_mul_ps(bf16_lo(v1), inv), t);
  const __m256i r3 = rank15(_mm256_mul_ps(bf16_hi(v1), inv), t);
  // Its 64-bit groups now hold elements 0-7, 16-23, 8-15, 24-31.
  const __m256i r = _mm256_packus_epi16(_mm256_packs_epi32(r0, r1), _mm256_packs_epi32(r2, r3));
  return _mm256_permute4x64_epi64(r, 0xD8);
}

template <class In>
QLC_AVX2 void quantize_blocks(const Codebook4& cb, const In* x, int64_t blocksize, int64_t b0,
                              int64_t b1, uint8_t* packed, float* absmax) {
  const RankTables bounds = rank_tables(cb);
  const __m256i order =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(cb.order)));
  const __m256i nibble_weights = _mm256_set1_epi16(0x0110);  // even element * 16 + odd element
  for (int64_t b = b0; b < b1; ++b) {
    const In* xb = x + b * blocksize;
    uint8_t* pb = packed + b * blocksize / 2;
    const float am = avx2::block_absmax(xb, blocksize);
    absmax[b] = am;  // stored_absmax of a full block
    const __m256 inv = _mm256_set1_ps(1.0f / (am > kMinAbsmax ? am : kMinAbsmax));
    for (int64_t i = 0; i < blocksize; i += 32) {
      // scale_to_unit's clamp to [-1, 1] is left out: every midpoint lies inside (-1, 1), so
      // clamping cannot change how many are below the value.
      const __m256i codes = _mm256_shuffle_epi8(order, ranks32(xb + i, inv, bounds));
      const __m256i pairs = _mm256_maddubs_epi16(codes, nibble_weights);  // 16 words <= 255
      const __m256i bytes = _mm256_permute4x64_epi64(_mm256_packus_epi16(pairs, pairs), 0x08);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(pb + i / 2), _mm256_castsi256_si128(bytes));
    }
  }
}

// fp32 output: the block's 16 values code[k] * absmax (the reference's product, rounded once)
// in two registers, looked up with permutevar on the low 3 bits and a blend on bit 3.
QLC_AVX2 inline __m256 lookup16(__m256 t0, __m256 t1, __m128i nibbles8) {
  const __m256i idx = _mm256_cvtepu8_epi32(nibbles8);
  const __m256 lo = _mm256_permutevar8x32_ps(t0, idx);
  const __m256 hi = _mm256_permutevar8x32_ps(t1, idx);
  return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

template <bool kStream>
QLC_AVX2 void dequantize_blocks_f32(const Codebook4& cb, const uint8_t* packed,
                                    const float* absmax, int64_t blocksize, int64_t b0, int64_t b1,
                                    float* out) {
  const __m256 c0 = _mm256_loadu_ps(cb.code), c1 = _mm256_loadu_ps(cb.code + 8);
  const __m128i low4 = _mm_set1_epi8(0x0F);
  for (int64_t b = b0; b < b1; ++b) {
    const __m256 a = _mm256_set1_ps(absmax[b]);
    const __m256 t0 = _mm256_mul_ps(c0, a), t1 = _mm256_mul_ps(c1, a);
    const uint8_t* pb = packed + b * blocksize / 2;
    float* ob = out + b * blocksize;
    for (int64_t i = 0; i < blocksize; i += 32) {
      const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(pb + i / 2));
      const __m128i hi = _mm_and_si128(_mm_srli_epi16(x, 4), low4);
      const __m128i lo = _mm_and_si128(x, low4);
      const __m128i n0 = _mm_unpacklo_epi8(hi, lo);  // nibbles of elements 0..15, in order
      const __m128i n1 = _mm_unpackhi_epi8(hi, lo);  // 16..31
      avx2::store8<kStream>(ob + i, lookup16(t0, t1, n0));
      avx2::store8<kStream>(ob + i + 8, lookup16(t0, t1, _mm_srli_si128(n0, 8)));
      avx2::store8<kStream>(ob + i + 16, lookup16(t0, t1, n1));
      avx2::store8<kStream>(ob + i + 24, lookup16(t0, t1, _mm_srli_si128(n1, 8)));
    }
  }
}

// 16-bit output: the block's 16 results already converted (to_bf16 / to_fp16 of code[k] *
// absmax, so each element gets exactly the reference's bits), split into a low-byte and a
// high-byte table, looked up with vpshufb and re-interleaved.
template <class Out, bool kStream>
QLC_AVX2 void dequantize_blocks_16bit(const Codebook4& cb, const uint8_t* packed,
                                      const float* absmax, int64_t blocksize, int64_t b0,
                                      int64_t b1, Out* out) {
  const __m256 c0 = _mm256_loadu_ps(cb.code), c1 = _mm256_loadu_ps(cb.code + 8);
  // Per 128-bit lane: low bytes of the 8 words, then their high bytes.
  const __m256i split_bytes = _mm256_broadcastsi128_si256(
      _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
  // Packed bytes 0-3 and 8-11 to the low lane, 4-7 and 12-15 to the high lane: after the
  // nibble interleave and the lookup, unpacklo/unpackhi then yield elements 0-15 and 16-31.
  const __m256i spread = _mm256_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 0, 0, 0, 0, 0, 0, 0, 0,
                                          4, 5, 6, 7, 12, 13, 14, 15, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  for (int64_t b = b0; b < b1; ++b) {
    const __m256 a = _mm256_set1_ps(absmax[b]);
    const __m256i words =
        avx2::to_16bit_x16(_mm256_mul_ps(c0, a), _mm256_mul_ps(c1, a), static_cast<Out*>(nullptr));
    const __m256i s = _mm256_shuffle_epi8(words, split_bytes);
    const __m128i s_lo = _mm256_castsi256_si128(s), s_hi = _mm256_extracti128_si256(s, 1);
    const __m256i table_lo = _mm256_broadcastsi128_si256(_mm_unpacklo_epi64(s_lo, s_hi));
    const __m256i table_hi = _mm256_broadcastsi128_si256(_mm_unpackhi_epi64(s_lo, s_hi));
    const uint8_t* pb = packed + b * blocksize / 2;
    Out* ob = out + b * blocksize;
    for (int64_t i = 0; i < blocksize; i += 32) {
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(pb + i / 2));
      const __m256i x = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(bytes), spread);
      const __m256i idx = _mm256_unpacklo_epi8(_mm256_and_si256(_mm256_srli_epi16(x, 4), low4),
                                               _mm256_and_si256(x, low4));
      const __m256i lo = _mm256_shuffle_epi8(table_lo, idx);
      const __m256i hi = _mm256_shuffle_epi8(table_hi, idx);
      auto* dst = reinterpret_cast<__m256i*>(ob + i);
      if (kStream) {
        _mm256_stream_si256(dst, _mm256_unpacklo_epi8(lo, hi));
        _mm256_stream_si256(dst + 1, _mm256_unpackhi_epi8(lo, hi));
      } else {
        _mm256_storeu_si256(dst, _mm256_unpacklo_epi8(lo, hi));
        _mm256_storeu_si256(dst + 1, _mm256_unpackhi_epi8(lo, hi));
      }
    }
  }
}

template <bool kStream>
QLC_AVX2 void dequantize_blocks(const Codebook4& cb, const uint8_t* packed, const float* absmax,
                                int64_t blocksize, int64_t b0, int64_t b1, float* out) {
  dequantize_blocks_f32<kStream>(cb, packed, absmax, blocksize, b0, b1, out);
}
template <bool kStream>
QLC_AVX2 void dequantize_blocks(const Codebook4& cb, const uint8_t* packed, const float* absmax,
                                int64_t blocksize, int64_t b0, int64_t b1, Bf16* out) {
  dequantize_blocks_16bit<Bf16, kStream>(cb, packed, absmax, blocksize, b0, b1, out);
}
template <bool kStream>
QLC_AVX2 void dequantize_blocks(const Codebook4& cb, const uint8_t* packed, const float* absmax,
                                int64_t blocksize, int64_t b0, int64_t b1, Fp16* out) {
  dequantize_blocks_16bit<Fp16, kStream>(cb, packed, absmax, blocksize, b0, b1, out);
}

}  // namespace

template <class In>
void quantize_4bit_blocks_avx2(const Codebook4& cb, const In* x, int64_t blocksize, int64_t b0,
                               int64_t b1, uint8_t* packed, float* absmax) {
  quantize_blocks(cb, x, blocksize, b0, b1, packed, absmax);
}

template <class Out>
void dequantize_4bit_blocks_avx2(const Codebook4& cb, const uint8_t* packed, const float* absmax,
                                 int64_t blocksize, int64_t b0, int64_t b1, Out* out, bool stream) {
  if (stream) {
    dequantize_blocks<true>(cb, packed, absmax, blocksize, b0, b1, out);
    _mm_sfence();  // streaming stores are weakly ordered: publish them before the join
  } else {
    dequantize_blocks<false>(cb, packed, absmax, blocksize, b0, b1, out);
  }
}

#define QLC_INSTANTIATE(T)                                                                     \
  template void quantize_4bit_blocks_avx2<T>(const Codebook4&, const T*, int64_t, int64_t,     \
                                             int64_t, uint8_t*, float*);                       \
  template void dequantize_4bit_blocks_avx2<T>(const Codebook4&, const uint8_t*, const float*, \
                                               int64_t, int64_t, int64_t, T*, bool);
QLC_INSTANTIATE(float)
QLC_INSTANTIATE(Bf16)
QLC_INSTANTIATE(Fp16)
#undef QLC_INSTANTIATE

}  // namespace qlc::kernels::detail

#endif  // QLC_FAST_HAVE_AVX2
