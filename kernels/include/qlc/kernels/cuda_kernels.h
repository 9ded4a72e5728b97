// CUDA launchers of the quantized formats, over raw device pointers.
//
// This header exposes no CUDA type (the project rule: public headers never include CUDA headers),
// so code that does not know CUDA can call it: a stream is passed as `void*` (a cudaStream_t;
// nullptr = the default stream). Every buffer argument is device (or managed) memory unless a
// comment says otherwise. Launchers are asynchronous on `stream` except where noted, and throw
// std::runtime_error carrying the CUDA runtime's error text when a CUDA call fails, or
// std::invalid_argument for arguments the kernels cannot take. They do not scan for NaN/Inf: the
// tensor-level API checks inputs; the kernels give the scalar reference's bits even for such
// values, NaN payloads aside (gpu_selfcheck_test.cc says why).
//
// The per-element arithmetic is the QLC_HD code of codebook_4bit.h, dynamic_map.h, block_scale.h,
// blockwise_8bit.h, int8_rowwise.h, adamw.h and float_bits.h, so results equal the scalar
// references (*_reference.cc) bit for bit; nvcc compiles it with --fmad=false for that reason.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <utility>

#include "qlc/kernels/adamw.h"
#include "qlc/kernels/blockwise_4bit.h"
#include "qlc/kernels/blockwise_8bit.h"
#include "qlc/kernels/float_bits.h"
#include "qlc/kernels/int8_rowwise.h"

namespace qlc::kernels::cuda {

// True when a CUDA device is present, the driver can run this runtime, and a kernel compiled into
// this library runs on the current device. Otherwise false, with the runtime's error text in *reason
// (e.g. "CUDA driver version is insufficient for CUDA runtime version") when reason != nullptr.
bool cuda_device_usable(std::string* reason);

// --- Memory helpers (so that callers and tests need no CUDA headers) -------------------------

// Owning device allocation (cudaMalloc), move-only. Zero bytes allocates nothing.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  size_t size() const { return size_; }
  template <class T>
  T* as() const { return static_cast<T*>(data_); }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// Synchronous copies (cudaMemcpy: they wait for the default stream's earlier work).
void copy_to_device(void* device_dst, const void* host_src, size_t bytes);
void copy_to_host(void* host_dst, const void* device_src, size_t bytes);
// Waits for `stream`; rethrows an asynchronous kernel error as std::runtime_error.
void synchronize(void* stream = nullptr);

// --- 4-bit blockwise (NF4 / FP4) ------------------------------------------------------------
// Same layout and results as quantize_4bit_reference / dequantize_4bit_reference: `packed` holds
// packed_bytes_4bit(n) bytes, `absmax` num_blocks(n, blocksize) floats. blocksize must satisfy
// is_supported_blocksize (a power of two, 32..4096). In, Out: float, Bf16 or Fp16.

template <class In>
void quantize_4bit(const In* x, int64_t n, int64_t blocksize, QuantType4 type, uint8_t* packed,
                   float* absmax, void* stream = nullptr);

// Vectorized (16 packed bytes per thread) when `packed` and `out` are 16-byte aligned, as
// cudaMalloc'd buffers are; an element-wise kernel otherwise. Same bits either way.
template <class Out>
void dequantize_4bit(const uint8_t* packed, const float* absmax, int64_t n, int64_t blocksize,
                     QuantType4 type, Out* out, void* stream = nullptr);

// --- 8-bit blockwise with the dynamic map -----------------------------------------------------
// Same results as quantize_8bit_reference / dequantize_8bit_reference, for either Search8 rule.
// `out` / `q` hold n bytes, `absmax` num_blocks(n, blocksize) floats; any blocksize >= 1 (the
// dequantizer is vectorized when blocksize is a multiple of 16 and the pointers 16-byte aligned).

template <class In>
void quantize_8bit_blockwise(const In* x, int64_t n, int64_t blocksize, bool is_signed,
                             Search8 search, uint8_t* out, float* absmax, void* stream = nullptr);

template <class Out>
void dequantize_8bit_blockwise(const uint8_t* q, const float* absmax, int64_t n, int64_t blocksize,
                               bool is_signed, Out* out, void* stream = nullptr);

// --- Double quantization of the 4-bit absmax (QLoRA) ----------------------------------------
// Same results as torch_cpu_mean + double_quantize_reference: returns the offset and writes
// qabsmax[blocks] and absmax2[num_blocks(blocks, kDoubleQuantBlocksize)].
// Waits for `stream` to copy `absmax` to the host (see double_quant.cu for why the offset is
// computed there), then launches the 8-bit quantization on `stream` and returns.
float double_quantize_absmax(const float* absmax, int64_t blocks, uint8_t* qabsmax, float* absmax2,
                             void* stream = nullptr);

// absmax_out[i] = code8[qabsmax[i]] * absmax2[i / 256] + offset, as restore_absmax_reference.
void restore_absmax(const uint8_t* qabsmax, const float* absmax2, float offset, int64_t blocks,
                    float* absmax_out, void* stream = nullptr);

// --- LLM.int8 row-wise -------------------------------------------------------------------------
// Same results as quantize_int8_rowwise_reference: x, q are [rows, cols] row-major, row_stats
// [rows]. With threshold > 0 the outlier columns go to outlier_cols (device, capacity cols,
// ascending) and their count is returned; that path waits for `stream` (the count is a host value).
// With threshold <= 0 it is asynchronous, returns 0 and outlier_cols may be null. The one
// reproducible difference: a row holding NaNs of different bit patterns gets one of them as its
// statistic (the reference keeps the last), still a NaN.
template <class In>
int64_t quantize_int8_rowwise(const In* x, int64_t rows, int64_t cols, float threshold, int8_t* q,
                              float* row_stats, int64_t* outlier_cols, void* stream = nullptr);

// out = q * row_stats[r] / 127 in `order`, as dequantize_int8_rowwise_reference.
template <class Out>
void dequantize_int8_rowwise(const int8_t* q, const float* row_stats, int64_t rows, int64_t cols,
                             Int8DequantOrder order, Out* out, void* stream = nullptr);

// --- AdamW steps (adamw.h) -------------------------------------------------------------------
// Same bits as the *_reference steps of adamw.h; p, g and the states are device (or managed)
// memory, config and step as there (checked: std::invalid_argument). P, G: float, Bf16, Fp16.

// 8-bit blockwise states (codes n bytes each, absmax ceil(n / 256) floats each).
template <class P, class G>
void adamw_8bit_step(P* p, const G* g, const AdamW8bitStates& states, int64_t n,
                     const AdamWConfig& config, int64_t step, void* stream = nullptr);

// The paged variant: first prefetches the state codes that live in managed memory (see
// CudaStateAllocator) to the current device on `stream`, then runs adamw_8bit_step. Buffers in
// ordinary device memory are left alone, so it also takes unpaged states.
template <class P, class G>
void paged_adamw_8bit_step(P* p, const G* g, const AdamW8bitStates& states, int64_t n,
                           const AdamWConfig& config, int64_t step, void* stream = nullptr);

// fp32 states (bitsandbytes' 32-bit AdamW), m and v n floats each.
template <class P, class G>
void adamw_fp32_states_step(P* p, const G* g, float* m, float* v, int64_t n,
                            const AdamWConfig& config, int64_t step, void* stream = nullptr);

// States in the parameter dtype (torch.optim.AdamW), every tensor of type T.
template <class T>
void adamw_param_states_step(T* p, const T* g, T* m, T* v, int64_t n, const AdamWConfig& config,
                             int64_t step, void* stream = nullptr);

// A paged-state request the device cannot hold (std::bad_alloc, so the harness records `oom`),
// with a message saying how much was asked, held and free.
class ManagedMemoryExhausted : public std::bad_alloc {
 public:
  explicit ManagedMemoryExhausted(std::string message) : message_(std::move(message)) {}
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

// adamw.h's StateAllocator on the current CUDA device. paged == true: cudaMallocManaged, refused
// with ManagedMemoryExhausted when the managed bytes this allocator holds plus the request exceed
// what cudaMemGetInfo reports free; prefetch() = cudaMemPrefetchAsync to the device on `stream`
// (a no-op for non-managed memory and on devices without concurrent managed access). Otherwise
// cudaMalloc. Every buffer is zero-filled on `stream`. Thread-safe.
class CudaStateAllocator final : public StateAllocator {
 public:
  explicit CudaStateAllocator(void* stream = nullptr);
  ~CudaStateAllocator() override;
  void* allocate(int64_t bytes, bool paged) override;
  void release(void* ptr, int64_t bytes, bool paged) noexcept override;
  void prefetch(void* ptr, int64_t bytes) override;
  int64_t managed_bytes() const;  // paged bytes currently held

 private:
  struct Accounting;  // a mutex and a counter, kept out of this header
  void* stream_;
  std::unique_ptr<Accounting> accounting_;
};

}  // namespace qlc::kernels::cuda
