#include "qlc/kernels/block_scale.h"
#include "qlc/kernels/blockwise_8bit.h"

namespace qlc::kernels {

template <class In>
void quantize_8bit_reference(const In* x, int64_t n, int64_t blocksize, const DynamicMap8& map,
                             Search8 search, uint8_t* out, float* absmax) {
  for (int64_t b = 0, begin = 0; begin < n; ++b, begin += blocksize) {
    const int64_t end = begin + blocksize < n ? begin + blocksize : n;
    const float am = block_absmax(x, begin, end);
    if (search == Search8::kBnbCpuLibrary) {
      absmax[b] = am;  // the library neither clamps nor treats the short block differently
      const float inv = 1.0f / am;
      for (int64_t i = begin; i < end; ++i) {
        out[i] = am == 0.0f ? 0 : encode_8bit_bnb_library(map, to_float(x[i]) * inv);
      }
    } else {
      const bool full = end - begin == blocksize;
      absmax[b] = stored_absmax(am, full);
      for (int64_t i = begin; i < end; ++i) {
        out[i] = encode_8bit_nearest(map, scale_to_unit(to_float(x[i]), am, full));
      }
    }
  }
}

template <class Out>
void dequantize_8bit_reference(const uint8_t* q, const float* absmax, int64_t n, int64_t blocksize,
                               const DynamicMap8& map, Out* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = from_float<Out>(decode_8bit(map, q[i], absmax[i / blocksize]));
}

#define QLC_INSTANTIATE_8BIT(T)                                                                 \
  template void quantize_8bit_reference<T>(const T*, int64_t, int64_t, const DynamicMap8&,    \
                                           Search8, uint8_t*, float*);                         \
  template void dequantize_8bit_reference<T>(const uint8_t*, const float*, int64_t, int64_t,   \
                                             const DynamicMap8&, T*);
QLC_INSTANTIATE_8BIT(float)
QLC_INSTANTIATE_8BIT(Bf16)
QLC_INSTANTIATE_8BIT(Fp16)
#undef QLC_INSTANTIATE_8BIT

}  // namespace qlc::kernels
