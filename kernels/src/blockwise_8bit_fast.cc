// The fast 8-bit entry points: split blocks over threads and run the AVX2 or scalar kernel on
// each chunk (the kernels handle the short last block themselves).
#include <algorithm>
#include <array>
#include <stdexcept>
#include <vector>

#include "blockwise_fast_kernels.h"

namespace qlc::kernels {
namespace detail {

const uint8_t* bnb_library_lut(bool is_signed) {
  static const std::array<std::vector<uint8_t>, 2> luts = [] {
    std::array<std::vector<uint8_t>, 2> t;
    for (int s = 0; s < 2; ++s) {
      const DynamicMap8& map = dynamic_map(s == 1);
      t[s].assign(kBnbLutSize + 3, 0);
      for (int k = 0; k < kBnbLutSize; ++k) {
        // snap_to_bnb_grid's grid point k, computed by the same expression.
        const float point =
            -1.0f + (2.0f * static_cast<float>(k)) / static_cast<float>(kBnbLutSize - 1);
        t[s][k] = encode_8bit_nearest(map, point);
      }
    }
    return t;
  }();
  return luts[is_signed ? 1 : 0].data();
}

const uint32_t* nearest_lut(bool is_signed) {
  static const std::array<std::vector<uint32_t>, 2> luts = [] {
    std::array<std::vector<uint32_t>, 2> t;
    for (int s = 0; s < 2; ++s) {
      const float* bounds = dynamic_map(s == 1).bounds;
      t[s].assign(65536, 0);
      for (uint32_t key = 0; key < 65536; ++key) {
        float lo = float_of(key << 16), hi = float_of((key << 16) | 0xFFFFu);
        if (key & 0x8000u) std::swap(lo, hi);  // negative: larger bits, smaller values
        if (lo != lo) lo = hi;                  // -inf's bucket: -inf, then NaNs
        if (hi != hi) hi = lo;                  // +inf's bucket: +inf, then NaNs
        if (lo != lo) continue;                 // all NaN: code 0
        const int64_t base = std::lower_bound(bounds, bounds + 255, lo) - bounds;  // bounds < lo
        const int64_t end = std::upper_bound(bounds, bounds + 255, hi) - bounds;   // bounds <= hi
        uint32_t entry = static_cast<uint32_t>(base) << 16;
        if (end - base > 1) throw std::logic_error("dynamic map: two midpoints in one bucket");
        if (end - base == 1) {
          const uint32_t bits = bits_of(bounds[base]);
          // A midpoint of 0 could sit in the other sign's zero bucket; the maps have none.
          if (bits >> 16 != key) throw std::logic_error("dynamic map: midpoint outside its bucket");
          entry |= 0x80000000u | (bits & 0xFFFFu);
        }
        t[s][key] = entry;
      }
    }
    return t;
  }();
  return luts[is_signed ? 1 : 0].data();
}

}  // namespace detail

namespace {

// Scalar kernels over blocks [b0, b1): the reference's arithmetic, block by block.
template <class In>
void quantize_blocks_scalar(const DynamicMap8& map, const In* x, int64_t n, int64_t blocksize,
                            Search8 search, int64_t b0, int64_t b1, uint8_t* out, float* absmax) {
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t begin = b * blocksize;
    const int64_t end = std::min(n, begin + blocksize);
    const float am = block_absmax(x, begin, end);
    if (search == Search8::kBnbCpuLibrary) {
      absmax[b] = am;
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
void dequantize_blocks_scalar(const DynamicMap8& map, const uint8_t* q, const float* absmax,
                              int64_t n, int64_t blocksize, int64_t b0, int64_t b1, Out* out) {
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t end = std::min(n, (b + 1) * blocksize);
    for (int64_t i = b * blocksize; i < end; ++i) {
      out[i] = from_float<Out>(decode_8bit(map, q[i], absmax[b]));
    }
  }
}

}  // namespace

template <class In>
void quantize_8bit_fast_with(const In* x, int64_t n, int64_t blocksize, bool is_signed,
                             Search8 search, uint8_t* out, float* absmax,
                             const FastConfig& config) {
  if (n <= 0) return;
  const DynamicMap8& map = dynamic_map(is_signed);
  [[maybe_unused]] const CpuIsa isa = fast_kernel_isa(config);
#if QLC_FAST_HAVE_AVX2
  const void* lut = nullptr;
  if (isa >= CpuIsa::kAvx2) {
    if (search == Search8::kBnbCpuLibrary) {
      lut = detail::bnb_library_lut(is_signed);
    } else {
      lut = detail::nearest_lut(is_signed);
    }
  }
#endif
  const int64_t blocks = num_blocks(n, blocksize);
  detail::for_block_chunks(blocks, blocksize, config.chunks, [&](int64_t b0, int64_t b1) {
#if QLC_FAST_HAVE_AVX2
    if (isa >= CpuIsa::kAvx2) {
      detail::quantize_8bit_blocks_avx2(map, lut, x, n, blocksize, search, b0, b1, out, absmax);
      return;
    }
#endif
    quantize_blocks_scalar(map, x, n, blocksize, search, b0, b1, out, absmax);
  });
}

template <class Out>
void dequantize_8bit_fast_with(const uint8_t* q, const float* absmax, int64_t n, int64_t blocksize,
                               bool is_signed, Out* out, const FastConfig& config) {
  if (n <= 0) return;
  const DynamicMap8& map = dynamic_map(is_signed);
  [[maybe_unused]] const CpuIsa isa = fast_kernel_isa(config);
  [[maybe_unused]] const bool stream =
      detail::stream_output(out, n * static_cast<int64_t>(sizeof(Out)), blocksize);
  const int64_t blocks = num_blocks(n, blocksize);
  detail::for_block_chunks(blocks, blocksize, config.chunks, [&](int64_t b0, int64_t b1) {
#if QLC_FAST_HAVE_AVX2
    if (isa >= CpuIsa::kAvx2) {
      detail::dequantize_8bit_blocks_avx2(map, q, absmax, n, blocksize, b0, b1, out, stream);
      return;
    }
#endif
    dequantize_blocks_scalar(map, q, absmax, n, blocksize, b0, b1, out);
  });
}

template <class In>
void quantize_8bit_fast(const In* x, int64_t n, int64_t blocksize, bool is_signed, Search8 search,
                        uint8_t* out, float* absmax) {
  quantize_8bit_fast_with(x, n, blocksize, is_signed, search, out, absmax, FastConfig{});
}

template <class Out>
void dequantize_8bit_fast(const uint8_t* q, const float* absmax, int64_t n, int64_t blocksize,
                          bool is_signed, Out* out) {
  dequantize_8bit_fast_with(q, absmax, n, blocksize, is_signed, out, FastConfig{});
}

#define QLC_INSTANTIATE(T)                                                                       \
  template void quantize_8bit_fast<T>(const T*, int64_t, int64_t, bool, Search8, uint8_t*,      \
                                      float*);                                                   \
  template void quantize_8bit_fast_with<T>(const T*, int64_t, int64_t, bool, Search8, uint8_t*, \
                                           float*, const FastConfig&);                           \
  template void dequantize_8bit_fast<T>(const uint8_t*, const float*, int64_t, int64_t, bool,   \
                                        T*);                                                     \
  template void dequantize_8bit_fast_with<T>(const uint8_t*, const float*, int64_t, int64_t,    \
                                             bool, T*, const FastConfig&);
QLC_INSTANTIATE(float)
QLC_INSTANTIATE(Bf16)
QLC_INSTANTIATE(Fp16)
#undef QLC_INSTANTIATE

}  // namespace qlc::kernels
