// AVX-512 kernel of the 8-bit AdamW step (adamw_8bit_states_fast), 16 lanes, one 256-element
// block at a time in three passes over a block-sized buffer that stays in L1:
//  1. decode: the code table of each map is held as four 256-byte planes (byte c of every code);
//     VBMI byte permutes (vpermt2b over 128 bytes, twice, blended on the index's top bit) look up
//     64 codes per plane at once, and byte / word unpacks put the four planes back together.
//     Exact: the same fp32 bits as map.code[q]; no gathers.
//  2. update: the reference's per-element arithmetic in the same order and rounding (explicit FMA
//     only where it calls fma_rn, real sqrt and divisions), the new absmax taken on the way.
//     Lanes whose gradient is NaN / Inf get the element rule through masks (m = v = 0, p not
//     stored); the short last block's missing lanes are masked off likewise.
//  3. encode: the library's grid snap in the same fp32 steps gives the grid index k, and the code
//     bnb_library_lut holds for k is found by an 8-step binary search over 255 16-bit thresholds
//     (32 lanes), see Thresholds; the table is checked once against the LUT at every index.
#include "adamw_fast_kernels.h"

#if QLC_FAST_HAVE_AVX2
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#define QLC_AVX512_ADAMW \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,gfni,avx2,fma,f16c")))

// GCC 12 warns about the undefined pass-through operand inside its own AVX-512 intrinsics
// (_mm512_undefined_*; GCC bug 105593), not about this code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace qlc::kernels::detail {
namespace {

constexpr int64_t kBlock = kAdamW8bitBlocksize;
static_assert(kBlock % 64 == 0, "the decode pass works in runs of 64 codes");

// ---- Encode by search.
// The grid point -1 + 2k / 65535 never decreases as k grows, so "bounds[i] < point(k)" holds
// exactly for k >= K_i, the first index whose LUT code exceeds i, and lut[k] = #{i : K_i <= k}
// (all K_i <= 65535 since lut[65535] = 255). A binary search finds that count bit by bit, from
// bit 7 down: bit b is set when K[lo + 2^b - 1] <= k, lo being the bits found so far. The search
// keeps lo bit-reversed (r = rev8(lo)), so that the bits found so far are r's low bits and index
// the step's probe table directly: table b holds K[rev8(r) + 2^b - 1] at r, for r < 2^(7 - b).
struct Thresholds {
  bool ok = false;
  uint16_t k127 = 0;  // bit 7's probe
  alignas(64) uint16_t t6[32] = {};
  alignas(64) uint16_t t5[32] = {};
  alignas(64) uint16_t t4[32] = {};
  alignas(64) uint16_t t3[32] = {};
  alignas(64) uint16_t t2[32] = {};
  alignas(64) uint16_t t1[64] = {};
  alignas(64) uint16_t t0[128] = {};
};

uint32_t rev8(uint32_t x) {
  uint32_t r = 0;
  for (int b = 0; b < 8; ++b) r |= ((x >> b) & 1u) << (7 - b);
  return r;
}

int search_scalar(const Thresholds& t, uint32_t k) {  // the vector search, one lane
  uint32_t r = k >= t.k127 ? 1 : 0;
  r |= k >= t.t6[r] ? 2 : 0;
  r |= k >= t.t5[r] ? 4 : 0;
  r |= k >= t.t4[r] ? 8 : 0;
  r |= k >= t.t3[r] ? 16 : 0;
  r |= k >= t.t2[r] ? 32 : 0;
  r |= k >= t.t1[r] ? 64 : 0;
  r |= k >= t.t0[r] ? 128 : 0;
  return static_cast<int>(rev8(r));
}

Thresholds make_thresholds(const uint8_t* lut) {
  Thresholds t;
  int64_t count[256] = {};
  for (int k = 0; k < kBnbLutSize; ++k) {
    if (k > 0 && lut[k] < lut[k - 1]) return t;  // not monotone: no thresholds (not expected)
    ++count[lut[k]];
  }
  uint32_t K[255];
  int64_t below = 0;
  for (int i = 0; i < 255; ++i) {
    below += count[i];  // indices with code <= i
    if (below > kBnbLutSize - 1) return t;
    K[i] = static_cast<uint32_t>(below);
  }
  t.k127 = static_cast<uint16_t>(K[127]);
  uint16_t* tables[7] = {t.t0, t.t1, t.t2, t.t3, t.t4, t.t5, t.t6};
  for (int b = 0; b < 7; ++b) {
    for (uint32_t r = 0; r < (1u << (7 - b)); ++r) {
      tables[b][r] = static_cast<uint16_t>(K[rev8(r) + (1u << b) - 1]);
    }
  }
  for (int k = 0; k < kBnbLutSize; ++k) {
    if (search_scalar(t, static_cast<uint32_t>(k)) != lut[k]) return t;
  }
  t.ok = true;
  return t;
}

const Thresholds& thresholds(bool is_signed) {
  static const Thresholds t[2] = {make_thresholds(bnb_library_lut(false)),
                                  make_thresholds(bnb_library_lut(true))};
  return t[is_signed ? 1 : 0];
}

struct SearchRegs {
  __m512i k127, t6, t5, t4, t3, t2, t1a, t1b, t0a, t0b, t0c, t0d;
};

QLC_AVX512_ADAMW SearchRegs search_regs(const Thresholds& t) {
  return {_mm512_set1_epi16(static_cast<short>(t.k127)),
          _mm512_load_si512(t.t6),
          _mm512_load_si512(t.t5),
          _mm512_load_si512(t.t4),
          _mm512_load_si512(t.t3),
          _mm512_load_si512(t.t2),
          _mm512_load_si512(t.t1),
          _mm512_load_si512(t.t1 + 32),
          _mm512_load_si512(t.t0),
          _mm512_load_si512(t.t0 + 32),
          _mm512_load_si512(t.t0 + 64),
          _mm512_load_si512(t.t0 + 96)};
}

// search_scalar on 32 grid indices (unsigned 16-bit lanes).
QLC_AVX512_ADAMW inline __m512i search32(__m512i k, const SearchRegs& t) {
  __m512i r = _mm512_maskz_mov_epi16(_mm512_cmpge_epu16_mask(k, t.k127), _mm512_set1_epi16(1));
  auto set = [&](__m512i probe, short bit) QLC_AVX512_ADAMW {
    r = _mm512_mask_add_epi16(r, _mm512_cmpge_epu16_mask(k, probe), r, _mm512_set1_epi16(bit));
  };
  set(_mm512_permutexvar_epi16(r, t.t6), 2);
  set(_mm512_permutexvar_epi16(r, t.t5), 4);
  set(_mm512_permutexvar_epi16(r, t.t4), 8);
  set(_mm512_permutexvar_epi16(r, t.t3), 16);
  set(_mm512_permutexvar_epi16(r, t.t2), 32);
  set(_mm512_permutex2var_epi16(t.t1a, r, t.t1b), 64);
  const __m512i low = _mm512_permutex2var_epi16(t.t0a, r, t.t0b);  // r < 128: bit 6 picks
  const __m512i high = _mm512_permutex2var_epi16(t.t0c, r, t.t0d);
  set(_mm512_mask_blend_epi16(_mm512_test_epi16_mask(r, _mm512_set1_epi16(64)), low, high), 128);
  // rev8 of each byte (the high bytes are 0): an affine map over GF(2) reversing the bits.
  return _mm512_gf2p8affine_epi64_epi8(r, _mm512_set1_epi64(0x8040201008040201), 0);
}

// snap_to_bnb_grid's index on 16 scaled values: max / min operand order keeps its NaN -> -1 rule.
// Its (a * 0.5) * 65535 is one multiply by 32767.5 here: a = x + 1 is 0 or at least 2^-24, so
// a * 0.5 is exact and both round the same real product once.
QLC_AVX512_ADAMW inline __m512i grid_index(__m512 x) {
  static_assert(kBnbLutSize == 65536, "32767.5 is (kBnbLutSize - 1) / 2");
  x = _mm512_max_ps(x, _mm512_set1_ps(-1.0f));
  x = _mm512_min_ps(x, _mm512_set1_ps(1.0f));
  __m512 t = _mm512_mul_ps(_mm512_add_ps(x, _mm512_set1_ps(1.0f)), _mm512_set1_ps(32767.5f));
  t = _mm512_add_ps(t, _mm512_set1_ps(0.5f));
  return _mm512_cvttps_epi32(t);
}

// Byte j < 32: the low byte of the word that _mm512_packus_epi32(k0, k1) puts element j of
// (k0, k1) in: word 8 * (e / 4) + e % 4 for element e of k0, 8 * (e / 4) + 4 + e % 4 of k1.
alignas(64) constexpr uint8_t kUnpackOrder[64] = {
    0, 2,  4,  6,  16, 18, 20, 22, 32, 34, 36, 38, 48, 50, 52, 54,
    8, 10, 12, 14, 24, 26, 28, 30, 40, 42, 44, 46, 56, 58, 60, 62};

// The codes of x[0, 32) scaled by inv, as bytes in order. kClamp = false leaves out the grid
// snap's clamp to [-1, 1], valid when inv is finite (see encode_block); the 16-bit packing's
// unsigned saturation then does the clamp's work.
template <bool kClamp>
QLC_AVX512_ADAMW inline __m256i encode32(const float* x, __m512 inv, const SearchRegs& t) {
  if (kClamp) {
    const __m512i k0 = grid_index(_mm512_mul_ps(_mm512_load_ps(x), inv));
    const __m512i k1 = grid_index(_mm512_mul_ps(_mm512_load_ps(x + 16), inv));
    // Low halves of the 32-bit lanes of k0, then of k1, in order.
    const __m512i pack = _mm512_set_epi16(62, 60, 58, 56, 54, 52, 50, 48, 46, 44, 42, 40, 38, 36,
                                          34, 32, 30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8,
                                          6, 4, 2, 0);
    return _mm512_cvtepi16_epi8(search32(_mm512_permutex2var_epi16(k0, pack, k1), t));
  }
  auto index = [&](const float* p) QLC_AVX512_ADAMW {
    __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_load_ps(p), inv), _mm512_set1_ps(1.0f));
    v = _mm512_add_ps(_mm512_mul_ps(v, _mm512_set1_ps(32767.5f)), _mm512_set1_ps(0.5f));
    return _mm512_cvttps_epi32(v);
  };
  const __m512i k = _mm512_packus_epi32(index(x), index(x + 16));
  const __m512i order = _mm512_load_si512(kUnpackOrder);
  return _mm512_castsi512_si256(_mm512_permutexvar_epi8(order, search32(k, t)));
}

QLC_AVX512_ADAMW inline __mmask32 first_bytes(int64_t count) {
  return count >= 32 ? ~__mmask32{0} : (__mmask32{1} << count) - 1;
}

// Whether 1 / am is finite. Then every scaled value x * (1 / am) with |x| <= am lies within
// 1 + 2^-23 of [-1, 1] or is NaN, and leaving out the clamp gives the same grid index: values
// a little past 1 give an index of at least 65535 (saturated to it), values below -1 an index of
// at most 0 (saturated to 0), and NaN the conversion's INT_MIN (saturated to 0, the index of -1).
inline bool clamp_free(float inv) { return inv - inv == 0.0f; }

// encode_state_8bit over a block's len <= 256 values, x the block's moments (so |x| <= am or NaN),
// readable up to len rounded up to 32.
QLC_AVX512_ADAMW void encode_block(const DynamicMap8& map, const Thresholds* t, const float* x,
                                   int64_t len, float am, uint8_t* out) {
  if (am == 0.0f) {
    std::memset(out, 0, static_cast<size_t>(len));
    return;
  }
  const float inv = 1.0f / am;
  if (t == nullptr) {  // a caller's map: no table
    for (int64_t j = 0; j < len; ++j) out[j] = encode_state_8bit(map, x[j], am, inv);
    return;
  }
  const SearchRegs regs = search_regs(*t);
  const __m512 vinv = _mm512_set1_ps(inv);
  const bool clamp = !clamp_free(inv);
  for (int64_t j = 0; j < len; j += 32) {
    const __m256i codes =
        clamp ? encode32<true>(x + j, vinv, regs) : encode32<false>(x + j, vinv, regs);
    _mm256_mask_storeu_epi8(out + j, first_bytes(len - j), codes);
  }
}

// Both moments of a block at once (default maps, 1 / absmax finite for both): the two searches
// are independent chains of dependent steps, which the core overlaps.
QLC_AVX512_ADAMW void encode_block_pair(const Thresholds& tm, const Thresholds& tv,
                                        const float* xm, const float* xv, int64_t len,
                                        float inv_m, float inv_v, uint8_t* out_m, uint8_t* out_v) {
  const SearchRegs rm = search_regs(tm), rv = search_regs(tv);
  const __m512 vinv_m = _mm512_set1_ps(inv_m), vinv_v = _mm512_set1_ps(inv_v);
  for (int64_t j = 0; j < len; j += 32) {
    const __m256i cm = encode32<false>(xm + j, vinv_m, rm);
    const __m256i cv = encode32<false>(xv + j, vinv_v, rv);
    const __mmask32 keep = first_bytes(len - j);
    _mm256_mask_storeu_epi8(out_m + j, keep, cm);
    _mm256_mask_storeu_epi8(out_v + j, keep, cv);
  }
}

// ---- Decode by byte permutes.
struct Planes {
  alignas(64) uint8_t byte[4][256];  // byte c (little-endian) of code[q]
};

Planes make_planes(const DynamicMap8& map) {
  Planes pl;
  for (int q = 0; q < 256; ++q) {
    const uint32_t bits = bits_of(map.code[q]);
    for (int c = 0; c < 4; ++c) pl.byte[c][q] = static_cast<uint8_t>(bits >> (8 * c));
  }
  return pl;
}

// The unpacks below leave position 16L + 4j + r (128-bit lane L, output register j) holding
// element 16j + 4L + r; indices are permuted the same way first so that outputs come in order.
alignas(64) constexpr uint8_t kTranspose[64] = {
    0,  1,  2,  3,  16, 17, 18, 19, 32, 33, 34, 35, 48, 49, 50, 51,
    4,  5,  6,  7,  20, 21, 22, 23, 36, 37, 38, 39, 52, 53, 54, 55,
    8,  9,  10, 11, 24, 25, 26, 27, 40, 41, 42, 43, 56, 57, 58, 59,
    12, 13, 14, 15, 28, 29, 30, 31, 44, 45, 46, 47, 60, 61, 62, 63};

// map.code[q] of 64 codes, to out[0..63].
QLC_AVX512_ADAMW inline void decode64(const Planes& pl, __m512i q, __m512i transpose, float* out) {
  q = _mm512_permutexvar_epi8(transpose, q);
  const __mmask64 high = _mm512_movepi8_mask(q);
  __m512i b[4];
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const uint8_t* t = pl.byte[c];
    const __m512i lo = _mm512_permutex2var_epi8(_mm512_load_si512(t), q, _mm512_load_si512(t + 64));
    const __m512i hi =
        _mm512_permutex2var_epi8(_mm512_load_si512(t + 128), q, _mm512_load_si512(t + 192));
    b[c] = _mm512_mask_blend_epi8(high, lo, hi);
  }
  const __m512i lo01 = _mm512_unpacklo_epi8(b[0], b[1]), hi01 = _mm512_unpackhi_epi8(b[0], b[1]);
  const __m512i lo23 = _mm512_unpacklo_epi8(b[2], b[3]), hi23 = _mm512_unpackhi_epi8(b[2], b[3]);
  _mm512_store_si512(out, _mm512_unpacklo_epi16(lo01, lo23));
  _mm512_store_si512(out + 16, _mm512_unpackhi_epi16(lo01, lo23));
  _mm512_store_si512(out + 32, _mm512_unpacklo_epi16(hi01, hi23));
  _mm512_store_si512(out + 48, _mm512_unpackhi_epi16(hi01, hi23));
}

// ---- 16 elements of P / G <-> fp32, lanes outside `k` not read / not written.
QLC_AVX512_ADAMW inline __m512 load16(const float* p, __mmask16 k) {
  return _mm512_maskz_loadu_ps(k, p);
}
QLC_AVX512_ADAMW inline __m512 load16(const Bf16* p, __mmask16 k) {  // exact
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
QLC_AVX512_ADAMW inline __m512 load16(const Fp16* p, __mmask16 k) {  // exact
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p));
}

QLC_AVX512_ADAMW inline void store16(float* p, __mmask16 k, __m512 f) {
  _mm512_mask_storeu_ps(p, k, f);
}
// to_bf16: round to nearest even, any NaN -> 0x7FC0.
QLC_AVX512_ADAMW inline void store16(Bf16* p, __mmask16 k, __m512 f) {
  const __m512i u = _mm512_castps_si512(f);
  const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF)),
                                                _mm512_set1_epi32(0x7F800000));
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), lsb);
  r = _mm512_srli_epi32(r, 16);
  r = _mm512_mask_mov_epi32(r, nan, _mm512_set1_epi32(0x7FC0));
  _mm256_mask_storeu_epi16(p, k, _mm512_cvtepi32_epi16(r));
}
// to_fp16: the conversion rounds like to_fp16 for every non-NaN; NaN becomes sign | 0x7E00.
QLC_AVX512_ADAMW inline void store16(Fp16* p, __mmask16 k, __m512 f) {
  __m256i h = _mm512_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT);
  const __mmask16 nan = _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q);
  const __m256i sign = _mm256_and_si256(h, _mm256_set1_epi16(static_cast<short>(0x8000)));
  const __m256i quiet = _mm256_or_si256(sign, _mm256_set1_epi16(0x7E00));
  h = _mm256_mask_blend_epi16(nan, h, quiet);
  _mm256_mask_storeu_epi16(p, k, h);
}

template <class P, class G>
QLC_AVX512_ADAMW void blocks(P* p, const G* g, const AdamW8bitStates& st, int64_t n,
                             const AdamW8bitMaps& maps, int64_t b0, int64_t b1,
                             const AdamWScalars& s) {
  const Planes planes_m = make_planes(*maps.m), planes_v = make_planes(*maps.v);
  const Thresholds* enc_m = maps.lut_m != nullptr ? &thresholds(true) : nullptr;
  const Thresholds* enc_v = maps.lut_v != nullptr ? &thresholds(false) : nullptr;
  const __m512i transpose = _mm512_load_si512(kTranspose);
  const __m512 b1v = _mm512_set1_ps(s.beta1), a1 = _mm512_set1_ps(s.one_minus_beta1);
  const __m512 b2v = _mm512_set1_ps(s.beta2), a2 = _mm512_set1_ps(s.one_minus_beta2);
  const __m512 c2 = _mm512_set1_ps(s.correction2), eps = _mm512_set1_ps(s.eps);
  const __m512 decay = _mm512_set1_ps(s.decay_factor);
  const __m512 neg_lr = _mm512_set1_ps(s.neg_lr_over_correction1);
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF), inf_bits = _mm512_set1_epi32(0x7F800000);
  // Moments of one block: decoded codes, then the new values (whole runs of 64 are written).
  alignas(64) float xm[kBlock];
  alignas(64) float xv[kBlock];
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t begin = b * kBlock;
    const int64_t len = std::min(n, begin + kBlock) - begin;
    for (int64_t j = 0; j < len; j += 64) {
      const __mmask64 k = len - j >= 64 ? ~__mmask64{0} : (__mmask64{1} << (len - j)) - 1;
      decode64(planes_m, _mm512_maskz_loadu_epi8(k, st.m + begin + j), transpose, xm + j);
      decode64(planes_v, _mm512_maskz_loadu_epi8(k, st.v + begin + j), transpose, xv + j);
    }
    const __m512 amv = _mm512_set1_ps(st.m_absmax[b]), avv = _mm512_set1_ps(st.v_absmax[b]);
    // New absmax: max_ps's second operand is the accumulator, so NaN never wins (block_absmax).
    __m512 max_m = _mm512_setzero_ps(), max_v = _mm512_setzero_ps();
    for (int64_t j = 0; j < len; j += 16) {
      const int64_t i = begin + j;
      const __mmask16 in =
          len - j >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << (len - j)) - 1);
      const __m512 gv = load16(g + i, in);
      const __m512i g_abs = _mm512_and_si512(_mm512_castps_si512(gv), abs_mask);
      const __mmask16 finite = _mm512_mask_cmplt_epi32_mask(in, g_abs, inf_bits);
      __m512 mv = _mm512_mul_ps(_mm512_load_ps(xm + j), amv);
      __m512 vv = _mm512_mul_ps(_mm512_load_ps(xv + j), avv);
      mv = _mm512_fmadd_ps(gv, a1, _mm512_mul_ps(mv, b1v));
      vv = _mm512_fmadd_ps(_mm512_mul_ps(a2, gv), gv, _mm512_mul_ps(vv, b2v));
      const __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vv), c2), eps);
      __m512 pv = load16(p + i, in);
      if (s.decay) pv = _mm512_mul_ps(pv, decay);
      store16(p + i, finite, _mm512_add_ps(pv, _mm512_div_ps(_mm512_mul_ps(neg_lr, mv), denom)));
      // A non-finite gradient: m = v = 0 and p as it was (bnb8_adamw_element).
      mv = _mm512_maskz_mov_ps(finite, mv);
      vv = _mm512_maskz_mov_ps(finite, vv);
      _mm512_store_ps(xm + j, mv);
      _mm512_store_ps(xv + j, vv);
      const __m512 abs_m = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(mv), abs_mask));
      const __m512 abs_v = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(vv), abs_mask));
      max_m = _mm512_max_ps(abs_m, max_m);
      max_v = _mm512_max_ps(abs_v, max_v);
    }
    // All lanes are non-negative and not NaN: any reduction order gives the same maximum.
    const float new_am = _mm512_reduce_max_ps(max_m), new_av = _mm512_reduce_max_ps(max_v);
    st.m_absmax[b] = new_am;
    st.v_absmax[b] = new_av;
    const float inv_m = 1.0f / new_am, inv_v = 1.0f / new_av;  // as the reference computes them
    if (enc_m != nullptr && enc_v != nullptr && new_am != 0.0f && new_av != 0.0f &&
        clamp_free(inv_m) && clamp_free(inv_v)) {
      encode_block_pair(*enc_m, *enc_v, xm, xv, len, inv_m, inv_v, st.m + begin, st.v + begin);
    } else {
      encode_block(*maps.m, enc_m, xm, len, new_am, st.m + begin);
      encode_block(*maps.v, enc_v, xv, len, new_av, st.v + begin);
    }
  }
}

}  // namespace

bool adamw_8bit_avx512_usable() {
  static const bool usable = [] {
    __builtin_cpu_init();
    const bool cpu = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                     __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                     __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("gfni");
    return cpu && thresholds(true).ok && thresholds(false).ok;
  }();
  return usable;
}

template <class P, class G>
void adamw_8bit_blocks_avx512(P* p, const G* g, const AdamW8bitStates& st, int64_t n,
                              const AdamW8bitMaps& maps, int64_t b0, int64_t b1,
                              const AdamWScalars& s) {
  blocks(p, g, st, n, maps, b0, b1, s);
}

#define QLC_INSTANTIATE_PG(P, G)                                                                 \
  template void adamw_8bit_blocks_avx512<P, G>(P*, const G*, const AdamW8bitStates&, int64_t,    \
                                               const AdamW8bitMaps&, int64_t, int64_t,           \
                                               const AdamWScalars&);
#define QLC_INSTANTIATE_P(P) \
  QLC_INSTANTIATE_PG(P, float) QLC_INSTANTIATE_PG(P, Bf16) QLC_INSTANTIATE_PG(P, Fp16)
QLC_INSTANTIATE_P(float)
QLC_INSTANTIATE_P(Bf16)
QLC_INSTANTIATE_P(Fp16)
#undef QLC_INSTANTIATE_P
#undef QLC_INSTANTIATE_PG

}  // namespace qlc::kernels::detail

#pragma GCC diagnostic pop

#endif  // QLC_FAST_HAVE_AVX2
