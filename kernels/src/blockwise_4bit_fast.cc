// The fast 4-bit entry points: split whole blocks over threads, run the AVX2 or scalar kernel on
// each chunk, then the short last block (if any) with the scalar code.
#include <atomic>

#include "blockwise_fast_kernels.h"
#include "non_finite_scan.h"

namespace qlc::kernels {
namespace {

// Scalar kernels over blocks [b0, b1) (the last may be short): the reference's own per-block
// code, so the fallback is correct by construction.
template <class In>
void quantize_blocks_scalar(const Codebook4& cb, const In* x, int64_t n, int64_t blocksize,
                            int64_t b0, int64_t b1, uint8_t* packed, float* absmax) {
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t begin = b * blocksize;
    const int64_t end = std::min(n, begin + blocksize);
    const bool full = end - begin == blocksize;
    const float am = block_absmax(x, begin, end);
    absmax[b] = stored_absmax(am, full);
    quantize_4bit_block(cb, x, begin, end, full, am, packed);
  }
}

// Each element is from_float(code[nibble] * absmax): 16 distinct results per block, converted
// once per block instead of once per element.
template <class Out>
void dequantize_blocks_scalar(const Codebook4& cb, const uint8_t* packed, const float* absmax,
                              int64_t n, int64_t blocksize, int64_t b0, int64_t b1, Out* out) {
  for (int64_t b = b0; b < b1; ++b) {
    Out table[16];
    for (int k = 0; k < 16; ++k) {
      table[k] = from_float<Out>(decode_4bit(cb, static_cast<uint8_t>(k), absmax[b]));
    }
    const int64_t begin = b * blocksize;
    const int64_t end = std::min(n, begin + blocksize);
    int64_t i = begin;
    for (; i + 1 < end; i += 2) {
      const uint8_t byte = packed[i / 2];
      out[i] = table[byte >> 4];
      out[i + 1] = table[byte & 0xF];
    }
    if (i < end) out[i] = table[packed[i / 2] >> 4];
  }
}

// Runs of this many elements are checked for NaN/Inf just before they are quantized: small
// enough to stay in the L1/L2 cache between the check and the kernel.
constexpr int64_t kCheckedRunElements = 8192;

// The fast quantizer; with kRefuseNonFinite, each thread first checks each run of blocks for
// NaN/Inf (has_non_finite, while the run is in cache) and every thread stops at the first find.
template <bool kRefuseNonFinite, class In>
bool quantize_4bit_fast_impl(const In* x, int64_t n, int64_t blocksize, QuantType4 type,
                             uint8_t* packed, float* absmax, const FastConfig& config) {
  if (n <= 0) return true;
  if (blocksize % 32 != 0) {  // not a size bitsandbytes supports; keep the reference's behaviour
    if (kRefuseNonFinite && detail::has_non_finite(x, n, CpuIsa::kScalar)) return false;
    quantize_4bit_reference(x, n, blocksize, type, packed, absmax);
    return true;
  }
  const Codebook4& cb = codebook4(type);
  const int64_t full_blocks = n / blocksize;
  const CpuIsa isa = fast_kernel_isa(config);
  auto quantize_blocks = [&](int64_t b0, int64_t b1) {
#if QLC_FAST_HAVE_AVX2
    if (isa == CpuIsa::kAvx512) {
      detail::quantize_4bit_blocks_avx512(cb, x, blocksize, b0, b1, packed, absmax);
      return;
    }
    if (isa == CpuIsa::kAvx2) {
      detail::quantize_4bit_blocks_avx2(cb, x, blocksize, b0, b1, packed, absmax);
      return;
    }
#endif
    quantize_blocks_scalar(cb, x, n, blocksize, b0, b1, packed, absmax);
  };
  std::atomic<bool> refused{false};
  detail::for_block_chunks(full_blocks, blocksize, config.chunks, [&](int64_t b0, int64_t b1) {
    if (!kRefuseNonFinite) return quantize_blocks(b0, b1);
    const int64_t run = std::max<int64_t>(1, kCheckedRunElements / blocksize);
    for (int64_t r0 = b0; r0 < b1 && !refused.load(std::memory_order_relaxed); r0 += run) {
      const int64_t r1 = std::min(b1, r0 + run);
      if (detail::has_non_finite(x + r0 * blocksize, (r1 - r0) * blocksize, isa)) {
        refused.store(true, std::memory_order_relaxed);
        return;
      }
      quantize_blocks(r0, r1);
    }
  });
  if (refused.load()) return false;
  if (full_blocks * blocksize < n) {
    const int64_t begin = full_blocks * blocksize;
    if (kRefuseNonFinite && detail::has_non_finite(x + begin, n - begin, isa)) return false;
    quantize_blocks_scalar(cb, x, n, blocksize, full_blocks, full_blocks + 1, packed, absmax);
  }
  return true;
}

}  // namespace

template <class In>
void quantize_4bit_fast_with(const In* x, int64_t n, int64_t blocksize, QuantType4 type,
                             uint8_t* packed, float* absmax, const FastConfig& config) {
  quantize_4bit_fast_impl<false>(x, n, blocksize, type, packed, absmax, config);
}

template <class In>
bool quantize_4bit_fast_finite(const In* x, int64_t n, int64_t blocksize, QuantType4 type,
                               uint8_t* packed, float* absmax, const FastConfig& config) {
  return quantize_4bit_fast_impl<true>(x, n, blocksize, type, packed, absmax, config);
}

template <class Out>
void dequantize_4bit_fast_with(const uint8_t* packed, const float* absmax, int64_t n,
                               int64_t blocksize, QuantType4 type, Out* out,
                               const FastConfig& config) {
  if (n <= 0) return;
  if (blocksize % 32 != 0) {
    dequantize_4bit_reference(packed, absmax, n, blocksize, type, out);
    return;
  }
  const Codebook4& cb = codebook4(type);
  const int64_t full_blocks = n / blocksize;
  [[maybe_unused]] const CpuIsa isa = fast_kernel_isa(config);
  [[maybe_unused]] const bool stream =
      detail::stream_output(out, n * static_cast<int64_t>(sizeof(Out)), blocksize);
  detail::for_block_chunks(full_blocks, blocksize, config.chunks, [&](int64_t b0, int64_t b1) {
#if QLC_FAST_HAVE_AVX2
    if (isa >= CpuIsa::kAvx2) {  // AVX-512 CPUs too: no AVX-512 dequantization kernel
      detail::dequantize_4bit_blocks_avx2(cb, packed, absmax, blocksize, b0, b1, out, stream);
      return;
    }
#endif
    dequantize_blocks_scalar(cb, packed, absmax, n, blocksize, b0, b1, out);
  });
  if (full_blocks * blocksize < n) {
    dequantize_blocks_scalar(cb, packed, absmax, n, blocksize, full_blocks, full_blocks + 1, out);
  }
}

template <class In>
void quantize_4bit_fast(const In* x, int64_t n, int64_t blocksize, QuantType4 type, uint8_t* packed,
                        float* absmax) {
  quantize_4bit_fast_with(x, n, blocksize, type, packed, absmax, FastConfig{});
}

template <class Out>
void dequantize_4bit_fast(const uint8_t* packed, const float* absmax, int64_t n, int64_t blocksize,
                          QuantType4 type, Out* out) {
  dequantize_4bit_fast_with(packed, absmax, n, blocksize, type, out, FastConfig{});
}

#define QLC_INSTANTIATE(T)                                                                       \
  template void quantize_4bit_fast<T>(const T*, int64_t, int64_t, QuantType4, uint8_t*, float*); \
  template void quantize_4bit_fast_with<T>(const T*, int64_t, int64_t, QuantType4, uint8_t*,     \
                                           float*, const FastConfig&);                           \
  template bool quantize_4bit_fast_finite<T>(const T*, int64_t, int64_t, QuantType4, uint8_t*,   \
                                             float*, const FastConfig&);                         \
  template void dequantize_4bit_fast<T>(const uint8_t*, const float*, int64_t, int64_t,         \
                                        QuantType4, T*);                                         \
  template void dequantize_4bit_fast_with<T>(const uint8_t*, const float*, int64_t, int64_t,    \
                                             QuantType4, T*, const FastConfig&);
QLC_INSTANTIATE(float)
QLC_INSTANTIATE(Bf16)
QLC_INSTANTIATE(Fp16)
#undef QLC_INSTANTIATE

}  // namespace qlc::kernels
