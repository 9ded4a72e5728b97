// ============================================================================================
// THE ONE FILE OF THE TENSOR API THAT NEEDS A CUDA LIBTORCH (c10/cuda: current stream, guard).
// It compiles its CUDA half only when the build has the CUDA kernels (QLC_HAVE_CUDA_KERNELS) and
// LibTorch was built with CUDA (ATen/cuda/CUDAConfig.h is generated only then; Debian's LibTorch
// 1.13 and the CPU wheels lack it and cannot compile c10/cuda code). Otherwise every entry point
// throws "built without CUDA kernels"; with a CPU-only LibTorch no CUDA tensor can reach it anyway.
// ============================================================================================
#include "cuda_backend.h"

#include "tensor_checks.h"

#if defined(QLC_HAVE_CUDA_KERNELS) && __has_include(<ATen/cuda/CUDAConfig.h>)
#define QLC_TENSOR_API_CUDA 1
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "qlc/kernels/cuda_kernels.h"
#endif

namespace qlc::kernels::detail::cuda_backend {

#if defined(QLC_TENSOR_API_CUDA)
namespace {

namespace launch = ::qlc::kernels::cuda;

// Makes `t`'s device current and hands out LibTorch's current stream on it, so our kernels are
// ordered with the caller's LibTorch work.
class OnDevice {
 public:
  explicit OnDevice(const at::Tensor& t)
      : guard_(t.device()), stream_(c10::cuda::getCurrentCUDAStream(t.device().index()).stream()) {}
  void* stream() const { return static_cast<void*>(stream_); }

 private:
  c10::cuda::CUDAGuard guard_;
  cudaStream_t stream_;
};

}  // namespace

void quantize_4bit(const char*, const at::Tensor& x, int64_t blocksize, QuantType4 type,
                   const at::Tensor& packed, const at::Tensor& absmax) {
  OnDevice on(x);
  with_float_type(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    launch::quantize_4bit(typed<T>(x), x.numel(), blocksize, type, typed_mut<uint8_t>(packed),
                          typed_mut<float>(absmax), on.stream());
  });
}

void dequantize_4bit(const char*, const at::Tensor& packed, const at::Tensor& absmax, int64_t n,
                     int64_t blocksize, QuantType4 type, const at::Tensor& out) {
  OnDevice on(packed);
  with_float_type(out.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    launch::dequantize_4bit(typed<uint8_t>(packed), typed<float>(absmax), n, blocksize, type,
                            typed_mut<T>(out), on.stream());
  });
}

float double_quantize(const char*, const at::Tensor& absmax, const at::Tensor& qabsmax,
                      const at::Tensor& absmax2) {
  OnDevice on(absmax);
  return launch::double_quantize_absmax(typed<float>(absmax), absmax.numel(),
                                        typed_mut<uint8_t>(qabsmax), typed_mut<float>(absmax2),
                                        on.stream());
}

void quantize_8bit(const char*, const at::Tensor& x, int64_t blocksize, bool is_signed,
                   Search8 search, const at::Tensor& q, const at::Tensor& absmax) {
  OnDevice on(x);
  with_float_type(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    launch::quantize_8bit_blockwise(typed<T>(x), x.numel(), blocksize, is_signed, search,
                                    typed_mut<uint8_t>(q), typed_mut<float>(absmax), on.stream());
  });
}

void dequantize_8bit(const char*, const at::Tensor& q, const at::Tensor& absmax, int64_t blocksize,
                     bool is_signed, const at::Tensor& out) {
  OnDevice on(q);
  with_float_type(out.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    launch::dequantize_8bit_blockwise(typed<uint8_t>(q), typed<float>(absmax), q.numel(), blocksize,
                                      is_signed, typed_mut<T>(out), on.stream());
  });
}

int64_t quantize_int8_rowwise(const char*, const at::Tensor& x, float threshold, const at::Tensor& q,
                              const at::Tensor& row_stats, const at::Tensor& outlier_cols) {
  OnDevice on(x);
  return with_float_type(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    return launch::quantize_int8_rowwise(typed<T>(x), x.size(0), x.size(1), threshold,
                                         typed_mut<int8_t>(q), typed_mut<float>(row_stats),
                                         outlier_cols.defined() ? typed_mut<int64_t>(outlier_cols) : nullptr,
                                         on.stream());
  });
}

void dequantize_int8_rowwise(const char*, const at::Tensor& q, const at::Tensor& row_stats,
                             Int8DequantOrder order, const at::Tensor& out) {
  OnDevice on(q);
  with_float_type(out.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    launch::dequantize_int8_rowwise(typed<int8_t>(q), typed<float>(row_stats), q.size(0), q.size(1),
                                    order, typed_mut<T>(out), on.stream());
  });
}

#else  // no CUDA kernels in this build

namespace {
[[noreturn]] void unavailable(const char* function) {
  fail(function,
       "got a CUDA tensor, but this library was built without CUDA kernels; expected a CPU tensor "
       "(or rebuild with QLC_ENABLE_CUDA=ON against a CUDA LibTorch)");
}
}  // namespace

void quantize_4bit(const char* function, const at::Tensor&, int64_t, QuantType4, const at::Tensor&,
                   const at::Tensor&) {
  unavailable(function);
}
void dequantize_4bit(const char* function, const at::Tensor&, const at::Tensor&, int64_t, int64_t,
                     QuantType4, const at::Tensor&) {
  unavailable(function);
}
float double_quantize(const char* function, const at::Tensor&, const at::Tensor&, const at::Tensor&) {
  unavailable(function);
}
void quantize_8bit(const char* function, const at::Tensor&, int64_t, bool, Search8, const at::Tensor&,
                   const at::Tensor&) {
  unavailable(function);
}
void dequantize_8bit(const char* function, const at::Tensor&, const at::Tensor&, int64_t, bool,
                     const at::Tensor&) {
  unavailable(function);
}
int64_t quantize_int8_rowwise(const char* function, const at::Tensor&, float, const at::Tensor&,
                              const at::Tensor&, const at::Tensor&) {
  unavailable(function);
}
void dequantize_int8_rowwise(const char* function, const at::Tensor&, const at::Tensor&,
                             Int8DequantOrder, const at::Tensor&) {
  unavailable(function);
}

#endif

}  // namespace qlc::kernels::detail::cuda_backend
