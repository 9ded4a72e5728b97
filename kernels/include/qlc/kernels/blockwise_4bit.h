// 4-bit blockwise quantization (NF4 / FP4) over raw buffers, byte-compatible with bitsandbytes:
// blocks of `blocksize` consecutive elements of the flattened weight, one fp32 absmax per block,
// a short last block with its own absmax, two codes per byte (first element in the high nibble).
//
// Three implementations with identical results: the scalar reference (the oracle), the fast CPU
// path (SIMD + threads, see cpu_dispatch.h) and the CUDA kernels. The tensor-level API
// (tensor_api.h) checks inputs and picks one; these functions assume valid arguments.
#pragma once

#include <cstdint>

#include "qlc/kernels/block_scale.h"
#include "qlc/kernels/codebook_4bit.h"
#include "qlc/kernels/float_bits.h"

namespace qlc::kernels {

// Blocksizes bitsandbytes supports: powers of two from 32 to 4096.
bool is_supported_blocksize(int64_t blocksize);
inline int64_t num_blocks(int64_t n, int64_t blocksize) { return (n + blocksize - 1) / blocksize; }
inline int64_t packed_bytes_4bit(int64_t n) { return (n + 1) / 2; }

// Encodes elements [begin, end) of one block (begin even) into packed bytes; an odd total count
// pads the last low nibble with the code of 0.0, as bitsandbytes pads a zero value.
template <class In>
QLC_HD void quantize_4bit_block(const Codebook4& cb, const In* x, int64_t begin, int64_t end,
                                bool full_block, float absmax, uint8_t* packed) {
  for (int64_t i = begin; i < end; i += 2) {
    const uint8_t hi = encode_4bit(cb, scale_to_unit(to_float(x[i]), absmax, full_block));
    const float second = i + 1 < end ? scale_to_unit(to_float(x[i + 1]), absmax, full_block) : 0.0f;
    packed[i / 2] = pack_nibbles(hi, encode_4bit(cb, second));
  }
}

template <class In>
void quantize_4bit_reference(const In* x, int64_t n, int64_t blocksize, QuantType4 type,
                             uint8_t* packed, float* absmax);

template <class Out>
void dequantize_4bit_reference(const uint8_t* packed, const float* absmax, int64_t n,
                               int64_t blocksize, QuantType4 type, Out* out);

}  // namespace qlc::kernels
