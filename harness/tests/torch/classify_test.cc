// The message table: the real messages users report (QLORA_FACTS.md) and the ones this LibTorch
// really raises, each to its outcome.
#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "qlc/harness/classify.h"

namespace qlc::harness {
namespace {

struct Example {
  const char* message;
  Outcome expected;
};

TEST(Classify, MessagesUsersReport) {
  const Example examples[] = {
      {"expected mat1 and mat2 to have the same dtype, but got: float != c10::Half",
       Outcome::kDtypeMismatch},
      {"expected mat1 and mat2 to have the same dtype, but got: c10::BFloat16 != c10::Half",
       Outcome::kDtypeMismatch},
      {"expected m1 and m2 to have the same dtype, but got: float != c10::BFloat16",
       Outcome::kDtypeMismatch},
      {"expected scalar type Float but found BFloat16", Outcome::kDtypeMismatch},
      {"expected scalar type Half but found Float", Outcome::kDtypeMismatch},
      {"ValueError: Attempting to unscale FP16 gradients.", Outcome::kUnsupportedDtype},
      {"\"addmm_impl_cpu_\" not implemented for 'Half'", Outcome::kUnsupportedDtype},
      {"\"bmm\" not implemented for 'BFloat16'", Outcome::kUnsupportedDtype},
      {"Current CUDA Device does not support bfloat16. Please switch dtype to float16.",
       Outcome::kUnsupportedDtype},
      {"Your setup doesn't support bf16/gpu. You need torch>=1.10, using Ampere GPU with "
       "cuda>=11.0",
       Outcome::kUnsupportedDtype},
      {"CUDA error: CUBLAS_STATUS_NOT_SUPPORTED when calling `cublasGemmStridedBatchedExFix(handle, "
       "opa, opb, m, n, k, (void*)&falpha, a, CUDA_R_16BF, lda, stridea, b, CUDA_R_16BF, ldb, "
       "strideb, (void*)&fbeta, c, CUDA_R_16BF, ldc, stridec, num_batches, CUDA_R_32F, "
       "CUBLAS_GEMM_DEFAULT_TENSOR_OP)`",
       Outcome::kUnsupportedDtype},
      {"CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 15.78 GiB total capacity)",
       Outcome::kOom},
      {"CUDA error: out of memory", Outcome::kOom},
      {"[enforce fail at alloc_cpu.cpp:75] err == 0. DefaultCPUAllocator: can't allocate memory: "
       "you tried to allocate 1099511627776 bytes. Error code 12 (Cannot allocate memory)",
       Outcome::kOom},
      {"std::bad_alloc", Outcome::kOom},
      {"CUDA error: an illegal memory access was encountered", Outcome::kCudaError},
      {"CUDA error: device-side assert triggered", Outcome::kCudaError},
      {"CUDA driver version is insufficient for CUDA runtime version", Outcome::kCudaError},
      {"CUDA error: no kernel image is available for execution on the device",
       Outcome::kUnsupportedOp},
      {"Could not run 'aten::empty_strided' with arguments from the 'CUDA' backend.",
       Outcome::kUnsupportedOp},
      // bitsandbytes 0.44.1 / 0.46.1 / 0.49.2 from PyPI on a CPU-only machine.
      {"CUDA is required but not available for bitsandbytes. Please consider installing the "
       "multi-platform enabled version of bitsandbytes, which is currently a work in progress.",
       Outcome::kUnsupportedOp},
      {"name 'str2optimizer32bit' is not defined", Outcome::kUnsupportedOp},
      {"'NoneType' object has no attribute 'shape'", Outcome::kUnsupportedOp},
      {"All input tensors need to be on the same GPU, but found some tensors to not be on a GPU:\n "
       "[(torch.Size([8192]), device(type='cpu'))]",
       Outcome::kUnsupportedOp},
  };
  for (const Example& e : examples) {
    const std::optional<Outcome> got = classify_message(e.message);
    ASSERT_TRUE(got.has_value()) << e.message;
    EXPECT_EQ(to_string(*got), to_string(e.expected)) << e.message;
  }
}

TEST(Classify, UnknownMessagesAreNotGuessed) {
  EXPECT_FALSE(classify_message("something entirely different").has_value());
  EXPECT_FALSE(classify_message("").has_value());
}

// No entry is shadowed by an earlier, more general one: each pattern's own text classifies to its
// own outcome.
TEST(Classify, EveryPatternIsReachable) {
  for (const MessagePattern& p : message_patterns()) {
    const std::optional<Outcome> got = classify_message(p.text);
    ASSERT_TRUE(got.has_value()) << p.text;
    EXPECT_EQ(to_string(*got), to_string(p.outcome)) << "pattern '" << p.text << "' is shadowed";
  }
}

std::string raised_by(const std::function<void()>& op) {
  try {
    op();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "";
}

// What this LibTorch really raises for a dtype mix without a cast (PEFT casts; a library that does
// not meets this): mm on CPU and linear.
TEST(Classify, RealLibTorchDtypeMismatch) {
  const at::Tensor x = at::randn({4, 8});
  const at::Tensor w16 = at::randn({3, 8}).to(at::kHalf);
  const at::Tensor wbf = at::randn({3, 8}).to(at::kBFloat16);
  for (const std::string& message :
       {raised_by([&] { at::mm(x, wbf.t()); }), raised_by([&] { at::linear(x, w16); }),
        raised_by([&] { at::matmul(x.unsqueeze(0), wbf.t()); })}) {
    ASSERT_FALSE(message.empty()) << "LibTorch accepted a dtype mix";
    const std::optional<Outcome> got = classify_message(message);
    ASSERT_TRUE(got.has_value()) << message;
    EXPECT_EQ(to_string(*got), "dtype_mismatch") << message;
  }
}

// fp16 matmul on CPU: LibTorch 1.13 raises "\"addmm_impl_cpu_\" not implemented for 'Half'",
// LibTorch 2.x computes it. Whatever this build does is what the table must handle.
TEST(Classify, RealLibTorchHalfMatmulOnCpu) {
  const at::Tensor a = at::randn({4, 8}).to(at::kHalf);
  const at::Tensor b = at::randn({8, 3}).to(at::kHalf);
  const std::string message = raised_by([&] { at::mm(a, b); });
  if (message.empty()) {
    GTEST_SKIP() << "this LibTorch computes fp16 matmul on CPU: nothing to classify";
  }
  EXPECT_NE(message.find("not implemented for 'Half'"), std::string::npos) << message;
  EXPECT_EQ(to_string(classify_message(message).value_or(Outcome::kHarnessError)),
            "unsupported_dtype");
}

TEST(Classify, FirstLinesDropBacktraceAndBlankLines) {
  const std::string raw =
      "expected m1 and m2 to have the same dtype\n\nException raised from addmm_impl_cpu_\n"
      "frame #0: c10::Error::Error\nframe #1: at::native::addmm\nframe #2: more\n";
  EXPECT_EQ(first_lines(raw, 2),
            "expected m1 and m2 to have the same dtype\nException raised from addmm_impl_cpu_");
  EXPECT_EQ(first_lines(std::string(2000, 'x'), 4, 100).size(), 100u);
}

}  // namespace
}  // namespace qlc::harness
