#include "qlc/kernels/blockwise_4bit.h"

namespace qlc::kernels {

bool is_supported_blocksize(int64_t blocksize) {
  return blocksize >= 32 && blocksize <= 4096 && (blocksize & (blocksize - 1)) == 0;
}

template <class In>
void quantize_4bit_reference(const In* x, int64_t n, int64_t blocksize, QuantType4 type,
                             uint8_t* packed, float* absmax) {
  const Codebook4& cb = codebook4(type);
  for (int64_t b = 0, begin = 0; begin < n; ++b, begin += blocksize) {
    const int64_t end = begin + blocksize < n ? begin + blocksize : n;
    const bool full = end - begin == blocksize;
    const float am = block_absmax(x, begin, end);
    absmax[b] = stored_absmax(am, full);
    quantize_4bit_block(cb, x, begin, end, full, am, packed);
  }
}

template <class Out>
void dequantize_4bit_reference(const uint8_t* packed, const float* absmax, int64_t n,
                               int64_t blocksize, QuantType4 type, Out* out) {
  const Codebook4& cb = codebook4(type);
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t byte = packed[i / 2];
    const uint8_t nibble = (i & 1) ? (byte & 0xF) : (byte >> 4);
    out[i] = from_float<Out>(decode_4bit(cb, nibble, absmax[i / blocksize]));
  }
}

#define QLC_INSTANTIATE_QUANTIZE_4BIT(T)                                                          \
  template void quantize_4bit_reference<T>(const T*, int64_t, int64_t, QuantType4, uint8_t*, \
                                           float*);                                              \
  template void dequantize_4bit_reference<T>(const uint8_t*, const float*, int64_t, int64_t,     \
                                             QuantType4, T*);
QLC_INSTANTIATE_QUANTIZE_4BIT(float)
QLC_INSTANTIATE_QUANTIZE_4BIT(Bf16)
QLC_INSTANTIATE_QUANTIZE_4BIT(Fp16)
#undef QLC_INSTANTIATE_QUANTIZE_4BIT

}  // namespace qlc::kernels
