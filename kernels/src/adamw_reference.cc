// Scalar oracles of the AdamW steps (adamw.h): one element at a time through the shared QLC_HD
// functions, no SIMD, no threads.
#include <string>

#include "qlc/kernels/adamw.h"

namespace qlc::kernels {

void check_adamw_config(const AdamWConfig& c, int64_t step) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("AdamW: " + what); };
  // Written so that NaN fails every check.
  if (!(c.lr >= 0.0)) fail("lr must be >= 0, got " + std::to_string(c.lr));
  if (!(c.beta1 >= 0.0 && c.beta1 < 1.0)) fail("beta1 must be in [0, 1), got " + std::to_string(c.beta1));
  if (!(c.beta2 >= 0.0 && c.beta2 < 1.0)) fail("beta2 must be in [0, 1), got " + std::to_string(c.beta2));
  if (!(c.eps >= 0.0)) fail("eps must be >= 0, got " + std::to_string(c.eps));
  if (!(c.weight_decay >= 0.0)) fail("weight_decay must be >= 0, got " + std::to_string(c.weight_decay));
  if (step < 1) fail("step counts updates from 1, got " + std::to_string(step));
}

template <class P, class G>
void adamw_fp32_states_reference(P* p, const G* g, float* m, float* v, int64_t n,
                                 const AdamWConfig& config, int64_t step) {
  check_adamw_config(config, step);
  const AdamWScalars s = adamw_scalars(config, step);
  for (int64_t i = 0; i < n; ++i) {
    float mi = m[i];
    float vi = v[i];
    bnb_adam_moments(to_float(g[i]), s, mi, vi);
    m[i] = mi;
    v[i] = vi;
    p[i] = from_float<P>(bnb32_adamw_param(to_float(p[i]), mi, vi, s));
  }
}

template <class T>
void adamw_param_states_reference(T* p, const T* g, T* m, T* v, int64_t n,
                                  const AdamWConfig& config, int64_t step) {
  check_adamw_config(config, step);
  const AdamWScalars s = adamw_scalars(config, step);
  for (int64_t i = 0; i < n; ++i) torch_adamw_element(p[i], g[i], m[i], v[i], s);
}

template <class P, class G>
void adamw_8bit_states_reference(P* p, const G* g, const AdamW8bitStates& st, int64_t n,
                                 const AdamWConfig& config, int64_t step) {
  check_adamw_config(config, step);
  const AdamWScalars s = adamw_scalars(config, step);
  const DynamicMap8& map_m = st.m_map != nullptr ? *st.m_map : dynamic_map(true);
  const DynamicMap8& map_v = st.v_map != nullptr ? *st.v_map : dynamic_map(false);
  float new_m[kAdamW8bitBlocksize];
  float new_v[kAdamW8bitBlocksize];
  for (int64_t b = 0, begin = 0; begin < n; ++b, begin += kAdamW8bitBlocksize) {
    const int64_t len = n - begin < kAdamW8bitBlocksize ? n - begin : kAdamW8bitBlocksize;
    // Dequantize with the old absmax, update, then requantize the whole block with the new one.
    for (int64_t j = 0; j < len; ++j) {
      const int64_t i = begin + j;
      float m = decode_8bit(map_m, st.m[i], st.m_absmax[b]);
      float v = decode_8bit(map_v, st.v[i], st.v_absmax[b]);
      float pi = to_float(p[i]);
      if (bnb8_adamw_element(to_float(g[i]), s, pi, m, v)) p[i] = from_float<P>(pi);
      new_m[j] = m;
      new_v[j] = v;
    }
    const float am_m = block_absmax(new_m, 0, len);
    const float am_v = block_absmax(new_v, 0, len);
    st.m_absmax[b] = am_m;
    st.v_absmax[b] = am_v;
    const float inv_m = 1.0f / am_m;
    const float inv_v = 1.0f / am_v;
    for (int64_t j = 0; j < len; ++j) {
      st.m[begin + j] = encode_state_8bit(map_m, new_m[j], am_m, inv_m);
      st.v[begin + j] = encode_state_8bit(map_v, new_v[j], am_v, inv_v);
    }
  }
}

#define QLC_INSTANTIATE_PG(P, G)                                                                 \
  template void adamw_fp32_states_reference<P, G>(P*, const G*, float*, float*, int64_t,         \
                                                  const AdamWConfig&, int64_t);                  \
  template void adamw_8bit_states_reference<P, G>(P*, const G*, const AdamW8bitStates&, int64_t, \
                                                  const AdamWConfig&, int64_t);
#define QLC_INSTANTIATE_P(P)  \
  QLC_INSTANTIATE_PG(P, float) \
  QLC_INSTANTIATE_PG(P, Bf16)  \
  QLC_INSTANTIATE_PG(P, Fp16)  \
  template void adamw_param_states_reference<P>(P*, const P*, P*, P*, int64_t, const AdamWConfig&, int64_t);
QLC_INSTANTIATE_P(float)
QLC_INSTANTIATE_P(Bf16)
QLC_INSTANTIATE_P(Fp16)
#undef QLC_INSTANTIATE_P
#undef QLC_INSTANTIATE_PG

}  // namespace qlc::kernels
