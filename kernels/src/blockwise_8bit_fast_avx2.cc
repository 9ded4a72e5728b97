// AVX2 kernels of 8-bit blockwise quantization with the dynamic map, 8 elements per step; the
// few elements of a block past its last multiple of 8 use the shared scalar functions.
#include "blockwise_fast_avx2.h"

#if QLC_FAST_HAVE_AVX2

namespace qlc::kernels::detail {
namespace {

using avx2::load8;

// encode_8bit_nearest on 8 values through nearest_lut: one gather per 8 values instead of a
// search of eight dependent steps.
QLC_AVX2 inline __m256i encode_nearest8(const uint32_t* lut, __m256 s) {
  const __m256i key = _mm256_srli_epi32(_mm256_castps_si256(s), 16);
  const __m256i entry = _mm256_i32gather_epi32(reinterpret_cast<const int*>(lut), key, 4);
  const __m256i low_bits = _mm256_and_si256(entry, _mm256_set1_epi32(0xFFFF));
  const __m256 inside = _mm256_castsi256_ps(_mm256_or_si256(_mm256_slli_epi32(key, 16), low_bits));
  const __m256i has_inside = _mm256_srai_epi32(entry, 31);
  const __m256 is_below = _mm256_cmp_ps(inside, s, _CMP_LT_OQ);
  const __m256i below = _mm256_and_si256(_mm256_castps_si256(is_below), has_inside);
  const __m256i base = _mm256_and_si256(_mm256_srli_epi32(entry, 16), _mm256_set1_epi32(0xFF));
  const __m256i code = _mm256_sub_epi32(base, below);
  // +inf's bucket also holds NaNs (code 0: no midpoint is below a NaN).
  return _mm256_andnot_si256(_mm256_castps_si256(_mm256_cmp_ps(s, s, _CMP_UNORD_Q)), code);
}

// encode_8bit_bnb_library on 8 values: snap_to_bnb_grid's arithmetic, one rounding per step
// (max/min operand order keeps its NaN -> -1 rule), then the grid point's code from the table.
QLC_AVX2 inline __m256i encode_bnb8(const uint8_t* lut, __m256 v) {
  v = _mm256_max_ps(v, _mm256_set1_ps(-1.0f));  // v > -1 ? v : -1
  v = _mm256_min_ps(v, _mm256_set1_ps(1.0f));   // v < 1 ? v : 1
  __m256 t = _mm256_mul_ps(_mm256_add_ps(v, _mm256_set1_ps(1.0f)), _mm256_set1_ps(0.5f));
  t = _mm256_mul_ps(t, _mm256_set1_ps(static_cast<float>(kBnbLutSize - 1)));
  t = _mm256_add_ps(t, _mm256_set1_ps(0.5f));
  const __m256i k = _mm256_cvttps_epi32(t);
  const __m256i word = _mm256_i32gather_epi32(reinterpret_cast<const int*>(lut), k, 1);
  return _mm256_and_si256(word, _mm256_set1_epi32(0xFF));
}

QLC_AVX2 inline void store_codes8(uint8_t* dst, __m256i codes) {
  const __m128i w =
      _mm_packs_epi32(_mm256_castsi256_si128(codes), _mm256_extracti128_si256(codes, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), _mm_packus_epi16(w, w));
}

template <class In>
QLC_AVX2 void quantize_blocks(const DynamicMap8& map, const void* lut, const In* x, int64_t n,
                              int64_t blocksize, Search8 search, int64_t b0, int64_t b1,
                              uint8_t* out, float* absmax) {
  const auto* bnb_lut = static_cast<const uint8_t*>(lut);
  const auto* nearest = static_cast<const uint32_t*>(lut);
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t begin = b * blocksize;
    const int64_t end = std::min(n, begin + blocksize);
    const int64_t len = end - begin;
    const int64_t vec_end = begin + (len & ~int64_t{7});
    const In* xb = x + begin;
    const float am = avx2::block_absmax(xb, len);
    if (search == Search8::kBnbCpuLibrary) {
      absmax[b] = am;
      if (am == 0.0f) {
        std::memset(out + begin, 0, static_cast<size_t>(len));
        continue;
      }
      const float inv = 1.0f / am;
      const __m256 vinv = _mm256_set1_ps(inv);
      int64_t i = begin;
      for (; i < vec_end; i += 8) {
        store_codes8(out + i, encode_bnb8(bnb_lut, _mm256_mul_ps(load8(x + i), vinv)));
      }
      for (; i < end; ++i) out[i] = encode_8bit_bnb_library(map, to_float(x[i]) * inv);
    } else {
      // scale_to_unit without its clamp: every midpoint lies in (-1, 1), so the count of
      // midpoints below the value is the same with or without it.
      const bool full = len == blocksize;
      absmax[b] = stored_absmax(am, full);
      const float am_clamped = am > kMinAbsmax ? am : kMinAbsmax;
      const __m256 vinv = _mm256_set1_ps(1.0f / am_clamped);
      const __m256 vam = _mm256_set1_ps(am_clamped);
      int64_t i = begin;
      for (; i < vec_end; i += 8) {
        const __m256 v = load8(x + i);
        const __m256 s = full ? _mm256_mul_ps(v, vinv) : _mm256_div_ps(v, vam);
        store_codes8(out + i, encode_nearest8(nearest, s));
      }
      for (; i < end; ++i) {
        out[i] = encode_8bit_nearest(map, scale_to_unit(to_float(x[i]), am, full));
      }
    }
  }
}

template <class Out, bool kStream>
QLC_AVX2 void dequantize_blocks(const DynamicMap8& map, const uint8_t* q, const float* absmax,
                                int64_t n, int64_t blocksize, int64_t b0, int64_t b1, Out* out) {
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t begin = b * blocksize;
    const int64_t end = std::min(n, begin + blocksize);
    const int64_t vec_end = begin + ((end - begin) & ~int64_t{7});
    const __m256 a = _mm256_set1_ps(absmax[b]);
    int64_t i = begin;
    for (; i < vec_end; i += 8) {
      const __m256i idx =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i)));
      avx2::store8<kStream>(out + i, _mm256_mul_ps(_mm256_i32gather_ps(map.code, idx, 4), a));
    }
    for (; i < end; ++i) out[i] = from_float<Out>(decode_8bit(map, q[i], absmax[b]));
  }
}

}  // namespace

template <class In>
void quantize_8bit_blocks_avx2(const DynamicMap8& map, const void* lut, const In* x, int64_t n,
                               int64_t blocksize, Search8 search, int64_t b0, int64_t b1,
                               uint8_t* out, float* absmax) {
  quantize_blocks(map, lut, x, n, blocksize, search, b0, b1, out, absmax);
}

template <class Out>
void dequantize_8bit_blocks_avx2(const DynamicMap8& map, const uint8_t* q, const float* absmax,
                                 int64_t n, int64_t blocksize, int64_t b0, int64_t b1, Out* out,
                                 bool stream) {
  if (stream) {
    dequantize_blocks<Out, true>(map, q, absmax, n, blocksize, b0, b1, out);
    _mm_sfence();  // streaming stores are weakly ordered: publish them before the join
  } else {
    dequantize_blocks<Out, false>(map, q, absmax, n, blocksize, b0, b1, out);
  }
}

#define QLC_INSTANTIATE(T)                                                                     \
  template void quantize_8bit_blocks_avx2<T>(const DynamicMap8&, const void*, const T*,        \
                                             int64_t, int64_t, Search8, int64_t, int64_t,      \
                                             uint8_t*, float*);                                \
  template void dequantize_8bit_blocks_avx2<T>(const DynamicMap8&, const uint8_t*, const float*, \
                                               int64_t, int64_t, int64_t, int64_t, T*, bool);
QLC_INSTANTIATE(float)
QLC_INSTANTIATE(Bf16)
QLC_INSTANTIATE(Fp16)
#undef QLC_INSTANTIATE

}  // namespace qlc::kernels::detail

#endif  // QLC_FAST_HAVE_AVX2
