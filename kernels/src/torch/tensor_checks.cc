#include "tensor_checks.h"

#include <ATen/ops/isfinite.h>

#include <cstring>
#include <mutex>
#include <sstream>

#include "qlc/kernels/blockwise_4bit.h"
#include "qlc/kernels/parallel.h"

namespace qlc::kernels::detail {
namespace {

struct NonFinite {
  int64_t count = 0;
  int64_t first = -1;
};

// NaN and +-Inf are the patterns whose magnitude bits reach the infinity pattern's.
inline bool non_finite(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return (u & 0x7FFFFFFFu) >= 0x7F800000u;
}
inline bool non_finite(Bf16 x) { return (x.bits & 0x7FFFu) >= 0x7F80u; }
inline bool non_finite(Fp16 x) { return (x.bits & 0x7FFFu) >= 0x7C00u; }

// Over all cores, branch-free per element (the compiler vectorizes the count): weights are
// checked on every quantization, and a scalar scan cost more than the quantization itself.
template <class T>
NonFinite scan_non_finite(const T* x, int64_t n) {
  NonFinite r;
  std::mutex mutex;
  parallel_for(n, int64_t{1} << 16, [&](int64_t begin, int64_t end) {
    int64_t count = 0;
    for (int64_t i = begin; i < end; ++i) count += non_finite(x[i]) ? 1 : 0;
    if (count == 0) return;
    int64_t first = begin;
    while (!non_finite(x[first])) ++first;
    std::lock_guard<std::mutex> lock(mutex);
    r.count += count;
    if (r.first < 0 || first < r.first) r.first = first;
  });
  return r;
}

}  // namespace

void fail(const char* function, const std::string& message) {
  throw KernelInputError(std::string(function) + ": " + message);
}

std::string dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return "fp32";
    case at::kHalf: return "fp16";
    case at::kBFloat16: return "bf16";
    case at::kDouble: return "fp64";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kInt: return "int32";
    case at::kLong: return "int64";
    case at::kBool: return "bool";
    default: return c10::toString(dtype);
  }
}

std::string shape_string(at::IntArrayRef shape) {
  std::ostringstream s;
  s << '[';
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << ']';
  return s.str();
}

void check_defined(const char* function, const char* arg, const at::Tensor& t) {
  if (!t.defined()) fail(function, std::string(arg) + " is an undefined tensor; expected a tensor");
}

Backend backend_of(const char* function, const char* arg, const at::Tensor& t) {
  check_defined(function, arg, t);
  if (t.device().is_cpu()) return Backend::kCpu;
  if (t.device().is_cuda()) return Backend::kCuda;
  fail(function, std::string(arg) + " is on unsupported device " + t.device().str() +
                     "; expected a CPU or CUDA tensor");
}

void check_float_dtype(const char* function, const char* arg, const at::Tensor& t) {
  check_defined(function, arg, t);
  const at::ScalarType d = t.scalar_type();
  if (d != at::kFloat && d != at::kHalf && d != at::kBFloat16)
    fail(function, std::string(arg) + " has dtype " + dtype_name(d) + "; expected fp32, fp16 or bf16");
}

void check_dtype(const char* function, const char* arg, const at::Tensor& t, at::ScalarType expected) {
  check_defined(function, arg, t);
  if (t.scalar_type() != expected)
    fail(function, std::string(arg) + " has dtype " + dtype_name(t.scalar_type()) + "; expected " +
                       dtype_name(expected));
}

void check_out_dtype(const char* function, at::ScalarType dtype) {
  if (dtype != at::kFloat && dtype != at::kHalf && dtype != at::kBFloat16)
    fail(function, "output dtype " + dtype_name(dtype) + " is not supported; expected fp32, fp16 or bf16");
}

void check_same_device(const char* function, const char* arg, const at::Tensor& t,
                       const char* ref_arg, const at::Tensor& ref) {
  check_defined(function, arg, t);
  if (t.device() != ref.device())
    fail(function, std::string(arg) + " is on " + t.device().str() + " but " + ref_arg + " is on " +
                       ref.device().str() + "; expected both on one device");
}

void check_blocksize(const char* function, int64_t blocksize) {
  if (!is_supported_blocksize(blocksize))
    fail(function, "blocksize " + std::to_string(blocksize) +
                       " is not supported; expected a power of two from 32 to 4096");
}

void check_output(const char* function, const char* arg, const at::Tensor& t, at::ScalarType dtype,
                  at::IntArrayRef shape, const at::Device& device, const char* device_arg) {
  check_defined(function, arg, t);
  const std::string a(arg);
  if (dtype == at::ScalarType::Undefined) {
    const at::ScalarType d = t.scalar_type();
    if (d != at::kFloat && d != at::kHalf && d != at::kBFloat16)
      fail(function, a + " has dtype " + dtype_name(d) + "; expected fp32, fp16 or bf16");
  } else {
    check_dtype(function, arg, t, dtype);
  }
  if (t.device() != device)
    fail(function, a + " is on " + t.device().str() + " but " + device_arg + " is on " + device.str() +
                       "; expected both on one device");
  if (t.sizes() != shape)
    fail(function, a + " has shape " + shape_string(t.sizes()) + "; expected " + shape_string(shape));
  if (!t.is_contiguous())
    fail(function, a + " is not contiguous (strides " + shape_string(t.strides()) +
                       "); expected a contiguous tensor");
}

void check_finite(const char* function, const char* arg, const at::Tensor& t, const char* consequence) {
  NonFinite r;
  if (t.device().is_cpu()) {
    const at::Tensor c = t.contiguous();
    r = with_float_type(c.scalar_type(), [&](auto tag) {
      using T = decltype(tag);
      return scan_non_finite(typed<T>(c), c.numel());
    });
  } else {
    // Device-generic ATen ops: two small reductions, only on non-CPU tensors.
    const at::Tensor bad = at::isfinite(t.reshape(-1)).logical_not();
    r.count = bad.sum().item<int64_t>();
    if (r.count > 0) r.first = bad.nonzero().min().item<int64_t>();
  }
  if (r.count == 0) return;
  fail(function, std::string(arg) + " contains " + std::to_string(r.count) + " NaN/Inf value" +
                     (r.count == 1 ? "" : "s") + " (first at flat index " + std::to_string(r.first) +
                     "); " + consequence);
}

}  // namespace qlc::kernels::detail
