// Fast CPU path of the AdamW steps (adamw.h): threads over 256-element blocks (each thread writes
// disjoint elements and blocks, so the bits never depend on the split), AVX2 + FMA kernels where
// the CPU has them (AVX-512 for the 8-bit step: adamw_8bit_avx512.cc), the reference's
// per-element functions for the rest. Same operations in the same order as the reference:
// explicit FMA intrinsics exactly where the reference calls fma_rn, separate multiplies and adds
// elsewhere (the project builds with -ffp-contract=off).
#include <algorithm>
#include <cstring>
#include <vector>

#include "adamw_fast_kernels.h"
#include "blockwise_fast_avx2.h"
#include "blockwise_fast_kernels.h"
#include "qlc/kernels/adamw.h"

namespace qlc::kernels {
namespace {

constexpr int64_t kBlock = kAdamW8bitBlocksize;

// ---- Scalar kernels over elements [begin, end) / blocks [b0, b1): the reference's code.

template <class P, class G>
void fp32_states_scalar(P* p, const G* g, float* m, float* v, int64_t begin, int64_t end,
                        const AdamWScalars& s) {
  for (int64_t i = begin; i < end; ++i) {
    float mi = m[i];
    float vi = v[i];
    bnb_adam_moments(to_float(g[i]), s, mi, vi);
    m[i] = mi;
    v[i] = vi;
    p[i] = from_float<P>(bnb32_adamw_param(to_float(p[i]), mi, vi, s));
  }
}

template <class T>
void param_states_scalar(T* p, const T* g, T* m, T* v, int64_t begin, int64_t end,
                         const AdamWScalars& s) {
  for (int64_t i = begin; i < end; ++i) torch_adamw_element(p[i], g[i], m[i], v[i], s);
}

// The 8-bit update of elements [begin, end) of one block: p in place, new moments to nm / nv.
template <class P, class G>
void update_8bit_scalar(P* p, const G* g, const uint8_t* qm, const uint8_t* qv, float am, float av,
                        const DynamicMap8& map_m, const DynamicMap8& map_v, int64_t begin,
                        int64_t end, const AdamWScalars& s, float* nm, float* nv) {
  for (int64_t i = begin; i < end; ++i) {
    float m = decode_8bit(map_m, qm[i], am);
    float v = decode_8bit(map_v, qv[i], av);
    float pi = to_float(p[i]);
    if (bnb8_adamw_element(to_float(g[i]), s, pi, m, v)) p[i] = from_float<P>(pi);
    nm[i - begin] = m;
    nv[i - begin] = v;
  }
}

void encode_scalar(const DynamicMap8& map, const float* x, int64_t len, float am, uint8_t* out) {
  const float inv = 1.0f / am;
  for (int64_t j = 0; j < len; ++j) out[j] = encode_state_8bit(map, x[j], am, inv);
}

using Maps8 = detail::AdamW8bitMaps;

template <class P, class G>
void blocks_8bit_scalar(P* p, const G* g, const AdamW8bitStates& st, int64_t n, const Maps8& maps,
                        int64_t b0, int64_t b1, const AdamWScalars& s) {
  float nm[kBlock], nv[kBlock];
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t begin = b * kBlock;
    const int64_t len = std::min(n, begin + kBlock) - begin;
    update_8bit_scalar(p, g, st.m, st.v, st.m_absmax[b], st.v_absmax[b], *maps.m, *maps.v, begin,
                       begin + len, s, nm, nv);
    st.m_absmax[b] = block_absmax(nm, 0, len);
    st.v_absmax[b] = block_absmax(nv, 0, len);
    encode_scalar(*maps.m, nm, len, st.m_absmax[b], st.m + begin);
    encode_scalar(*maps.v, nv, len, st.v_absmax[b], st.v + begin);
  }
}

#if QLC_FAST_HAVE_AVX2
// ---- AVX2 kernels, 8 elements per step; the few past the last multiple of 8 go scalar.

using detail::avx2::load8;

QLC_AVX2 inline __m256 set1(float x) { return _mm256_set1_ps(x); }

// An fp32 value rounded to T and back (what an in-place op on a T tensor leaves).
QLC_AVX2 inline __m256 round8(__m256 x, float*) { return x; }
QLC_AVX2 inline __m256 round8(__m256 x, Bf16*) {
  const __m256i w = _mm256_cvtepu16_epi32(detail::avx2::to_bf16x8(x));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
QLC_AVX2 inline __m256 round8(__m256 x, Fp16*) { return _mm256_cvtph_ps(detail::avx2::to_fp16x8(x)); }
template <class T>
QLC_AVX2 inline __m256 round8(__m256 x) {
  return round8(x, static_cast<T*>(nullptr));
}

template <class T>
QLC_AVX2 inline void store8(T* dst, __m256 x) {
  detail::avx2::store8<false>(dst, x);
}

template <class P, class G>
QLC_AVX2 void fp32_states_avx2(P* p, const G* g, float* m, float* v, int64_t begin, int64_t end,
                               const AdamWScalars& s) {
  const __m256 b1 = set1(s.beta1), a1 = set1(s.one_minus_beta1);
  const __m256 b2 = set1(s.beta2), a2 = set1(s.one_minus_beta2);
  const __m256 decay = set1(s.decay_factor), eps = set1(s.eps_correction2), step = set1(s.step_size);
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    const __m256 gv = load8(g + i);
    const __m256 mv = _mm256_fmadd_ps(gv, a1, _mm256_mul_ps(_mm256_loadu_ps(m + i), b1));
    const __m256 vv = _mm256_fmadd_ps(_mm256_mul_ps(a2, gv), gv, _mm256_mul_ps(_mm256_loadu_ps(v + i), b2));
    _mm256_storeu_ps(m + i, mv);
    _mm256_storeu_ps(v + i, vv);
    __m256 pv = load8(p + i);
    if (s.decay) pv = _mm256_mul_ps(pv, decay);
    const __m256 update = _mm256_div_ps(mv, _mm256_add_ps(_mm256_sqrt_ps(vv), eps));
    store8(p + i, _mm256_fmadd_ps(update, step, pv));
  }
  fp32_states_scalar(p, g, m, v, i, end, s);
}

template <class T>
QLC_AVX2 void param_states_avx2(T* p, const T* g, T* m, T* v, int64_t begin, int64_t end,
                                const AdamWScalars& s) {
  const float w = s.one_minus_beta1;
  const bool small = (w < 0.0f ? -w : w) < 0.5f;  // lerp's branch, fixed by the scalar weight
  const __m256 coeff = set1(small ? w : w - 1.0f);
  const __m256 b2 = set1(s.beta2), a2 = set1(s.one_minus_beta2), decay = set1(s.decay_factor);
  const __m256 bc2 = set1(s.bias_correction2_sqrt), eps = set1(s.eps);
  const __m256 neg_lr = set1(s.neg_lr_over_correction1);
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    __m256 pv = load8(p + i);
    if (s.decay) pv = round8<T>(_mm256_mul_ps(pv, decay));
    const __m256 gv = load8(g + i);
    const __m256 m_old = load8(m + i);
    const __m256 diff = _mm256_sub_ps(gv, m_old);
    const __m256 mv = round8<T>(_mm256_fmadd_ps(coeff, diff, small ? m_old : gv));
    const __m256 v_scaled = round8<T>(_mm256_mul_ps(load8(v + i), b2));
    const __m256 vv = round8<T>(_mm256_fmadd_ps(_mm256_mul_ps(a2, gv), gv, v_scaled));
    __m256 denom = round8<T>(_mm256_sqrt_ps(vv));
    denom = round8<T>(_mm256_div_ps(denom, bc2));
    denom = round8<T>(_mm256_add_ps(denom, eps));
    store8(p + i, _mm256_add_ps(pv, _mm256_div_ps(_mm256_mul_ps(neg_lr, mv), denom)));
    store8(m + i, mv);
    store8(v + i, vv);
  }
  param_states_scalar(p, g, m, v, i, end, s);
}

// encode_8bit_bnb_library on 8 values: snap_to_bnb_grid's steps (max / min operand order keeps
// its NaN -> -1 rule), then the grid point's code from the library's table.
QLC_AVX2 inline void encode8(const uint8_t* lut, __m256 x, uint8_t* out) {
  x = _mm256_max_ps(x, set1(-1.0f));
  x = _mm256_min_ps(x, set1(1.0f));
  __m256 t = _mm256_mul_ps(_mm256_add_ps(x, set1(1.0f)), set1(0.5f));
  t = _mm256_mul_ps(t, set1(static_cast<float>(kBnbLutSize - 1)));
  t = _mm256_add_ps(t, set1(0.5f));
  const __m256i k = _mm256_cvttps_epi32(t);
  const __m256i word = _mm256_i32gather_epi32(reinterpret_cast<const int*>(lut), k, 1);
  const __m256i codes = _mm256_and_si256(word, _mm256_set1_epi32(0xFF));
  const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(codes), _mm256_extracti128_si256(codes, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm_packus_epi16(w16, w16));
}

QLC_AVX2 void encode_avx2(const DynamicMap8& map, const uint8_t* lut, const float* x, int64_t len,
                          float am, uint8_t* out) {
  if (lut == nullptr) return encode_scalar(map, x, len, am, out);
  if (am == 0.0f) {
    std::memset(out, 0, static_cast<size_t>(len));
    return;
  }
  const float inv = 1.0f / am;
  const __m256 vinv = set1(inv);
  int64_t j = 0;
  for (; j + 8 <= len; j += 8) encode8(lut, _mm256_mul_ps(_mm256_load_ps(x + j), vinv), out + j);
  for (; j < len; ++j) out[j] = encode_state_8bit(map, x[j], am, inv);
}

template <class P, class G>
QLC_AVX2 void blocks_8bit_avx2(P* p, const G* g, const AdamW8bitStates& st, int64_t n,
                               const Maps8& maps, int64_t b0, int64_t b1, const AdamWScalars& s) {
  const __m256 b1v = set1(s.beta1), a1 = set1(s.one_minus_beta1);
  const __m256 b2v = set1(s.beta2), a2 = set1(s.one_minus_beta2);
  const __m256 c2 = set1(s.correction2), eps = set1(s.eps), decay = set1(s.decay_factor);
  const __m256 neg_lr = set1(s.neg_lr_over_correction1);
  const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF), inf_bits = _mm256_set1_epi32(0x7F800000);
  alignas(32) float nm[kBlock];
  alignas(32) float nv[kBlock];
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t begin = b * kBlock;
    const int64_t len = std::min(n, begin + kBlock) - begin;
    const float am = st.m_absmax[b], av = st.v_absmax[b];
    const __m256 amv = set1(am), avv = set1(av);
    int64_t j = 0;
    for (; j + 8 <= len; j += 8) {
      const int64_t i = begin + j;
      const __m256 gv = load8(g + i);
      const __m256i g_abs = _mm256_and_si256(_mm256_castps_si256(gv), abs_mask);
      if (_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(inf_bits, g_abs))) != 0xFF) {
        // A NaN / Inf gradient among the 8 (rare): the element rule, one at a time.
        update_8bit_scalar(p, g, st.m, st.v, am, av, *maps.m, *maps.v, i, i + 8, s, nm + j, nv + j);
        continue;
      }
      const __m256i qm = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(st.m + i)));
      const __m256i qv = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(st.v + i)));
      __m256 mv = _mm256_mul_ps(_mm256_i32gather_ps(maps.m->code, qm, 4), amv);
      __m256 vv = _mm256_mul_ps(_mm256_i32gather_ps(maps.v->code, qv, 4), avv);
      mv = _mm256_fmadd_ps(gv, a1, _mm256_mul_ps(mv, b1v));
      vv = _mm256_fmadd_ps(_mm256_mul_ps(a2, gv), gv, _mm256_mul_ps(vv, b2v));
      const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vv), c2), eps);
      __m256 pv = load8(p + i);
      if (s.decay) pv = _mm256_mul_ps(pv, decay);
      store8(p + i, _mm256_add_ps(pv, _mm256_div_ps(_mm256_mul_ps(neg_lr, mv), denom)));
      _mm256_store_ps(nm + j, mv);
      _mm256_store_ps(nv + j, vv);
    }
    update_8bit_scalar(p, g, st.m, st.v, am, av, *maps.m, *maps.v, begin + j, begin + len, s,
                       nm + j, nv + j);
    const float new_am = detail::avx2::block_absmax(nm, len);
    const float new_av = detail::avx2::block_absmax(nv, len);
    st.m_absmax[b] = new_am;
    st.v_absmax[b] = new_av;
    encode_avx2(*maps.m, maps.lut_m, nm, len, new_am, st.m + begin);
    encode_avx2(*maps.v, maps.lut_v, nv, len, new_av, st.v + begin);
  }
}
#endif  // QLC_FAST_HAVE_AVX2

bool use_avx2(const FastConfig& fast) { return fast_kernel_isa(fast) >= CpuIsa::kAvx2; }

// Runs fn(begin, end) over element ranges made of whole 256-element blocks.
template <class Fn>
void for_element_blocks(int64_t n, const FastConfig& fast, Fn&& fn) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  detail::for_block_chunks(blocks, kBlock, fast.chunks, [&](int64_t b0, int64_t b1) {
    fn(b0 * kBlock, std::min(n, b1 * kBlock));
  });
}

}  // namespace

template <class P, class G>
void adamw_fp32_states_fast(P* p, const G* g, float* m, float* v, int64_t n,
                            const AdamWConfig& config, int64_t step, const FastConfig& fast) {
  check_adamw_config(config, step);
  const AdamWScalars s = adamw_scalars(config, step);
  const bool avx2 = use_avx2(fast);
  for_element_blocks(n, fast, [&](int64_t begin, int64_t end) {
#if QLC_FAST_HAVE_AVX2
    if (avx2) return fp32_states_avx2(p, g, m, v, begin, end, s);
#endif
    (void)avx2;
    fp32_states_scalar(p, g, m, v, begin, end, s);
  });
}

template <class T>
void adamw_param_states_fast(T* p, const T* g, T* m, T* v, int64_t n, const AdamWConfig& config,
                             int64_t step, const FastConfig& fast) {
  check_adamw_config(config, step);
  const AdamWScalars s = adamw_scalars(config, step);
  const bool avx2 = use_avx2(fast);
  for_element_blocks(n, fast, [&](int64_t begin, int64_t end) {
#if QLC_FAST_HAVE_AVX2
    if (avx2) return param_states_avx2(p, g, m, v, begin, end, s);
#endif
    (void)avx2;
    param_states_scalar(p, g, m, v, begin, end, s);
  });
}

template <class P, class G>
void adamw_8bit_states_fast(P* p, const G* g, const AdamW8bitStates& st, int64_t n,
                            const AdamWConfig& config, int64_t step, const FastConfig& fast) {
  check_adamw_config(config, step);
  const AdamWScalars s = adamw_scalars(config, step);
  // The library's lookup tables exist for the default maps; other maps encode with the scalar
  // function (same codes, used by comparisons with a given machine's bitsandbytes).
  Maps8 maps{st.m_map != nullptr ? st.m_map : &dynamic_map(true),
             st.v_map != nullptr ? st.v_map : &dynamic_map(false), nullptr, nullptr};
  if (maps.m == &dynamic_map(true)) maps.lut_m = detail::bnb_library_lut(true);
  if (maps.v == &dynamic_map(false)) maps.lut_v = detail::bnb_library_lut(false);
  const bool avx2 = use_avx2(fast);
#if QLC_FAST_HAVE_AVX2
  const bool avx512 =
      fast_kernel_isa(fast) == CpuIsa::kAvx512 && detail::adamw_8bit_avx512_usable();
#endif
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  detail::for_block_chunks(blocks, kBlock, fast.chunks, [&](int64_t b0, int64_t b1) {
#if QLC_FAST_HAVE_AVX2
    if (avx512) return detail::adamw_8bit_blocks_avx512(p, g, st, n, maps, b0, b1, s);
    if (avx2) return blocks_8bit_avx2(p, g, st, n, maps, b0, b1, s);
#endif
    (void)avx2;
    blocks_8bit_scalar(p, g, st, n, maps, b0, b1, s);
  });
}

#define QLC_INSTANTIATE_PG(P, G)                                                                  \
  template void adamw_fp32_states_fast<P, G>(P*, const G*, float*, float*, int64_t,               \
                                             const AdamWConfig&, int64_t, const FastConfig&);     \
  template void adamw_8bit_states_fast<P, G>(P*, const G*, const AdamW8bitStates&, int64_t,       \
                                             const AdamWConfig&, int64_t, const FastConfig&);
#define QLC_INSTANTIATE_P(P)                                                                      \
  QLC_INSTANTIATE_PG(P, float)                                                                    \
  QLC_INSTANTIATE_PG(P, Bf16)                                                                     \
  QLC_INSTANTIATE_PG(P, Fp16)                                                                     \
  template void adamw_param_states_fast<P>(P*, const P*, P*, P*, int64_t, const AdamWConfig&,     \
                                           int64_t, const FastConfig&);
QLC_INSTANTIATE_P(float)
QLC_INSTANTIATE_P(Bf16)
QLC_INSTANTIATE_P(Fp16)
#undef QLC_INSTANTIATE_P
#undef QLC_INSTANTIATE_PG

}  // namespace qlc::kernels
