// The CPU implementation the tensor API calls: the fast CPU path (blockwise_fast.h: SIMD + threads,
// bit-identical to the scalar reference). Going back to the reference, e.g. to bisect a
// difference, is the one `using` line at the end. LLM.int8 and double quantization have no fast
// path yet: they call their references directly.
#pragma once

#include <cmath>

#include "qlc/kernels/blockwise_4bit.h"
#include "qlc/kernels/blockwise_8bit.h"
#include "qlc/kernels/blockwise_fast.h"

namespace qlc::kernels::detail {

struct ReferenceCpu {
  template <class In>
  static void quantize_4bit(const In* x, int64_t n, int64_t blocksize, QuantType4 type,
                            uint8_t* packed, float* absmax) {
    quantize_4bit_reference(x, n, blocksize, type, packed, absmax);
  }
  // quantize_4bit, or false (nothing written) when x holds a NaN or Inf.
  template <class In>
  static bool quantize_4bit_finite(const In* x, int64_t n, int64_t blocksize, QuantType4 type,
                                   uint8_t* packed, float* absmax) {
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(to_float(x[i]))) return false;
    quantize_4bit_reference(x, n, blocksize, type, packed, absmax);
    return true;
  }
  template <class Out>
  static void dequantize_4bit(const uint8_t* packed, const float* absmax, int64_t n,
                              int64_t blocksize, QuantType4 type, Out* out) {
    dequantize_4bit_reference(packed, absmax, n, blocksize, type, out);
  }
  template <class In>
  static void quantize_8bit(const In* x, int64_t n, int64_t blocksize, bool is_signed,
                            Search8 search, uint8_t* out, float* absmax) {
    quantize_8bit_reference(x, n, blocksize, is_signed, search, out, absmax);
  }
  template <class Out>
  static void dequantize_8bit(const uint8_t* q, const float* absmax, int64_t n, int64_t blocksize,
                              bool is_signed, Out* out) {
    dequantize_8bit_reference(q, absmax, n, blocksize, is_signed, out);
  }
};

// The fast path: same entry points, SIMD + threads, bit-identical to the reference.
struct FastCpu {
  template <class In>
  static void quantize_4bit(const In* x, int64_t n, int64_t blocksize, QuantType4 type,
                            uint8_t* packed, float* absmax) {
    quantize_4bit_fast(x, n, blocksize, type, packed, absmax);
  }
  // quantize_4bit, or false (packed and absmax then partly written) when x holds a NaN or Inf;
  // the check rides along with the quantization (no second pass over x).
  template <class In>
  static bool quantize_4bit_finite(const In* x, int64_t n, int64_t blocksize, QuantType4 type,
                                   uint8_t* packed, float* absmax) {
    return quantize_4bit_fast_finite(x, n, blocksize, type, packed, absmax);
  }
  template <class Out>
  static void dequantize_4bit(const uint8_t* packed, const float* absmax, int64_t n,
                              int64_t blocksize, QuantType4 type, Out* out) {
    dequantize_4bit_fast(packed, absmax, n, blocksize, type, out);
  }
  template <class In>
  static void quantize_8bit(const In* x, int64_t n, int64_t blocksize, bool is_signed,
                            Search8 search, uint8_t* out, float* absmax) {
    quantize_8bit_fast(x, n, blocksize, is_signed, search, out, absmax);
  }
  template <class Out>
  static void dequantize_8bit(const uint8_t* q, const float* absmax, int64_t n, int64_t blocksize,
                              bool is_signed, Out* out) {
    dequantize_8bit_fast(q, absmax, n, blocksize, is_signed, out);
  }
};

using CpuKernels = FastCpu;

}  // namespace qlc::kernels::detail
