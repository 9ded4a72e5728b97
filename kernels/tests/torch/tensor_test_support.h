// Small helpers shared by the tensor-API tests: tensors from std::vector, raw views, bit patterns,
// deterministic data, and the "message contains" check for KernelInputError.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <torch/version.h>

#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "qlc/kernels/float_bits.h"
#include "qlc/kernels/safetensors.h"

namespace qlc::kernels::testing {

template <class T>
at::Tensor tensor_of(const std::vector<T>& values, std::vector<int64_t> shape, at::ScalarType dtype) {
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
  EXPECT_EQ(t.numel() * static_cast<int64_t>(t.element_size()),
            static_cast<int64_t>(values.size() * sizeof(T)));
  if (!values.empty()) std::memcpy(t.data_ptr(), values.data(), values.size() * sizeof(T));
  return t;
}

inline at::Tensor tensor_of(const StTensor& st, at::ScalarType dtype) {
  at::Tensor t = at::empty(st.shape, at::TensorOptions().dtype(dtype));
  if (!st.data.empty()) std::memcpy(t.data_ptr(), st.data.data(), st.data.size());
  return t;
}

// A safetensors tensor as an at::Tensor of its own dtype.
inline at::Tensor tensor_of(const StTensor& st) {
  static const std::pair<const char*, at::ScalarType> kTypes[] = {
      {"F32", at::kFloat}, {"F16", at::kHalf}, {"BF16", at::kBFloat16}, {"I8", at::kChar},
      {"U8", at::kByte},   {"I32", at::kInt},  {"I64", at::kLong},      {"F64", at::kDouble}};
  for (const auto& [name, dtype] : kTypes)
    if (st.dtype == name) return tensor_of(st, dtype);
  ADD_FAILURE() << "no LibTorch dtype for safetensors dtype " << st.dtype;
  return at::Tensor();
}

template <class T>
std::vector<T> values_of(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  std::vector<T> out(static_cast<size_t>(c.numel() * c.element_size() / static_cast<int64_t>(sizeof(T))));
  if (!out.empty()) std::memcpy(out.data(), c.data_ptr(), out.size() * sizeof(T));
  return out;
}

// Bit patterns of a tensor of any dtype, as bytes: "the same bits" comparisons.
inline std::vector<uint8_t> bytes_of(const at::Tensor& t) { return values_of<uint8_t>(t); }

// Float values of a fp32 / fp16 / bf16 tensor (exact widening).
inline std::vector<float> floats_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kHalf: {
      std::vector<float> out;
      for (uint16_t b : values_of<uint16_t>(t)) out.push_back(to_float(Fp16{b}));
      return out;
    }
    case at::kBFloat16: {
      std::vector<float> out;
      for (uint16_t b : values_of<uint16_t>(t)) out.push_back(to_float(Bf16{b}));
      return out;
    }
    default: return values_of<float>(t);
  }
}

// Deterministic normal data with a scale (seeded per call site).
inline std::vector<float> normal_values(int64_t n, float scale, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng) * scale;
  return v;
}

// Runs `fn`, expects an exception of type E whose what() contains every fragment.
template <class E, class Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& fragments) {
  try {
    fn();
    ADD_FAILURE() << "no exception; expected one containing '" << fragments.front() << "'";
  } catch (const E& e) {
    const std::string what = e.what();
    for (const std::string& f : fragments)
      EXPECT_NE(what.find(f), std::string::npos) << "message: " << what << "\nmissing: " << f;
  }
}

// Whether this LibTorch multiplies fp16 matrices on the CPU. LibTorch 1.13 (Debian's) does not:
// '"addmm_impl_cpu_" not implemented for 'Half''; tests then expect that error instead of a result.
inline bool cpu_has_fp16_matmul() {
  try {
    at::mm(at::ones({2, 2}, at::kHalf), at::ones({2, 2}, at::kHalf));
    return true;
  } catch (const c10::Error&) {
    return false;
  }
}
inline constexpr const char* kNoFp16MatmulMessage = "not implemented for 'Half'";

// "2.13.0": the version of the LibTorch this test links (a wheel's torch.__version__ starts so).
inline std::string linked_torch_version() { return TORCH_VERSION; }

}  // namespace qlc::kernels::testing
