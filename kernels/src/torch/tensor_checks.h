// Input checks shared by the tensor-level API: each failure is a KernelInputError whose message
// starts with the function and names the argument and what was expected.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <string>
#include <utility>

#include "qlc/kernels/float_bits.h"
#include "qlc/kernels/tensor_api.h"

namespace qlc::kernels::detail {

[[noreturn]] void fail(const char* function, const std::string& message);

// Our dtype vocabulary: fp32, fp16, bf16, int8, uint8, ...
std::string dtype_name(at::ScalarType dtype);
std::string shape_string(at::IntArrayRef shape);

enum class Backend { kCpu, kCuda };
// The backend for `t`'s device; "unsupported device" for anything but CPU and CUDA.
Backend backend_of(const char* function, const char* arg, const at::Tensor& t);

void check_defined(const char* function, const char* arg, const at::Tensor& t);
void check_float_dtype(const char* function, const char* arg, const at::Tensor& t);
void check_dtype(const char* function, const char* arg, const at::Tensor& t, at::ScalarType expected);
void check_out_dtype(const char* function, at::ScalarType dtype);
void check_same_device(const char* function, const char* arg, const at::Tensor& t,
                       const char* ref_arg, const at::Tensor& ref);
void check_blocksize(const char* function, int64_t blocksize);
// A caller's output tensor for an out= form: defined, of `dtype` (or fp32 / fp16 / bf16 when
// `dtype` is at::ScalarType::Undefined), on `device` (the device of input `device_arg`), of
// exactly `shape` and contiguous (the kernels write its storage in order).
void check_output(const char* function, const char* arg, const at::Tensor& t, at::ScalarType dtype,
                  at::IntArrayRef shape, const at::Device& device, const char* device_arg);
// Counts NaN/Inf in a floating tensor (any device); names the count and the first flat index
// (row-major, as in the contiguous copy). `consequence` ends the message.
void check_finite(const char* function, const char* arg, const at::Tensor& t,
                  const char* consequence);

// Calls fn(tag) with tag a value of the storage type of a fp32 / fp16 / bf16 tensor.
template <class Fn>
decltype(auto) with_float_type(at::ScalarType dtype, Fn&& fn) {
  switch (dtype) {
    case at::kHalf: return std::forward<Fn>(fn)(Fp16{});
    case at::kBFloat16: return std::forward<Fn>(fn)(Bf16{});
    default: return std::forward<Fn>(fn)(float{});
  }
}

template <class T>
const T* typed(const at::Tensor& t) { return static_cast<const T*>(t.data_ptr()); }
template <class T>
T* typed_mut(const at::Tensor& t) { return static_cast<T*>(t.data_ptr()); }

}  // namespace qlc::kernels::detail
