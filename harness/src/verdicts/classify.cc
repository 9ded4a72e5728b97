// The one table of raw-message patterns. Order matters: specific before general (an OOM reported
// as "CUDA error: out of memory" is oom, not cuda_error; "not implemented for 'Half'" is a dtype
// gap, not a missing operator).
#include "qlc/harness/classify.h"

#include <algorithm>

namespace qlc::harness {

const std::vector<MessagePattern>& message_patterns() {
  static const std::vector<MessagePattern> table = {
      // --- out of memory (device or host) ---
      {"CUDA out of memory", Outcome::kOom, "CUDA caching allocator could not allocate"},
      {"out of memory", Outcome::kOom, "cudaErrorMemoryAllocation and allocator messages"},
      {"can't allocate memory", Outcome::kOom, "LibTorch's DefaultCPUAllocator"},
      {"CUBLAS_STATUS_ALLOC_FAILED", Outcome::kOom, "cuBLAS could not allocate its workspace"},
      {"std::bad_alloc", Outcome::kOom, "host allocation failed"},
      {"ManagedMemoryExhausted", Outcome::kOom, "paged optimizer states exceed free device memory"},

      // --- dtypes that meet without a cast (LoRA / base / input of different dtypes) ---
      {"expected mat1 and mat2 to have the same dtype", Outcome::kDtypeMismatch,
       "addmm/linear with operands of different dtypes (CUDA and LibTorch >= 2 CPU addmm)"},
      {"expected m1 and m2 to have the same dtype", Outcome::kDtypeMismatch,
       "mm/matmul on CPU with operands of different dtypes"},
      {"expected scalar type", Outcome::kDtypeMismatch,
       "e.g. 'expected scalar type Float but found BFloat16' (8-bit base + bf16, older stacks)"},
      {"Expected object of scalar type", Outcome::kDtypeMismatch, "LibTorch < 1.5 spelling"},
      {"Found dtype", Outcome::kDtypeMismatch,
       "loss backward: 'Found dtype Float but expected Half'"},
      {"to have the same dtype", Outcome::kDtypeMismatch, "bmm, dot, index ops and others"},
      {"Unexpected floating ScalarType in at::autocast::prioritize", Outcome::kDtypeMismatch,
       "autocast's promote ops (cat, stack) given fp16 and bf16 tensors: a bf16 model under "
       "fp16 autocast or the reverse"},
      {"must have the same dtype", Outcome::kDtypeMismatch, "matmul variants"},
      {"should be the same", Outcome::kDtypeMismatch,
       "'Input type (...) and weight type (...) should be the same'"},

      // --- a dtype this build/device has no kernel for ---
      {"not implemented for 'Half'", Outcome::kUnsupportedDtype,
       "fp16 kernels missing on CPU in older LibTorch ('\"addmm_impl_cpu_\" not implemented for "
       "'Half'')"},
      {"not implemented for 'BFloat16'", Outcome::kUnsupportedDtype, "bf16 kernel missing"},
      {"not implemented for '", Outcome::kUnsupportedDtype,
       "any '<op> not implemented for <dtype>' dispatch failure"},
      {"does not support bfloat16", Outcome::kUnsupportedDtype,
       "'Current CUDA Device does not support bfloat16' (pre-Ampere GPUs)"},
      {"doesn't support bf16", Outcome::kUnsupportedDtype, "'Your setup doesn't support bf16/gpu'"},
      {"CUBLAS_STATUS_NOT_SUPPORTED", Outcome::kUnsupportedDtype,
       "bf16 GEMM on GPUs without bf16 tensor cores (sm_60)"},
      {"AutocastCPU only support Bfloat16", Outcome::kUnsupportedDtype,
       "CPU autocast with fp16 before LibTorch 2.2 ('Currently, AutocastCPU only support Bfloat16 "
       "as the autocast_cpu_dtype')"},
      {"Attempting to unscale FP16 gradients", Outcome::kUnsupportedDtype,
       "fp16 trainable parameters under AMP gradient scaling"},

      // --- gradients that never reach the adapters ---
      {"does not require grad and does not have a grad_fn", Outcome::kNoLearning,
       "loss.backward() with no trainable tensor in the graph: reentrant gradient checkpointing "
       "without input gradients (enable_input_require_grads)"},

      // --- an operation the device/build does not provide at all ---
      {"All input tensors need to be on the same GPU", Outcome::kUnsupportedOp,
       "bitsandbytes < 0.50 optimizers (8-bit blockwise update) on CPU tensors"},
      {"'NoneType' object has no attribute 'shape'", Outcome::kUnsupportedOp,
       "bitsandbytes 0.45-0.49 optimizers (32-bit update) on CPU tensors: is_on_gpu's message "
       "fails on the absent unorm_vec"},
      {"name 'str2optimizer32bit' is not defined", Outcome::kUnsupportedOp,
       "bitsandbytes <= 0.44 built without GPU support: no 32-bit optimizer kernels"},
      {"CUDA is required but not available for bitsandbytes", Outcome::kUnsupportedOp,
       "bitsandbytes <= 0.44 on a machine without CUDA: no CPU code for 4/8-bit weights"},
      {"no kernel image is available", Outcome::kUnsupportedOp,
       "CUDA binaries not built for this GPU's architecture"},
      {"built without CUDA kernels", Outcome::kUnsupportedOp, "our kernels built without CUDA"},
      {"Torch not compiled with CUDA enabled", Outcome::kUnsupportedOp, "CPU-only LibTorch"},
      {"Could not run '", Outcome::kUnsupportedOp, "no kernel registered for this backend"},
      {"NotImplementedError", Outcome::kUnsupportedOp, "operator not implemented"},

      // --- CUDA runtime / driver / library errors ---
      {"CUDA error", Outcome::kCudaError, "cudaGetLastError after a launch or runtime call"},
      {"CUDA driver", Outcome::kCudaError, "driver too old or missing"},
      {"cudaError", Outcome::kCudaError, "CUDA runtime error code"},
      {"CUBLAS_STATUS_", Outcome::kCudaError, "other cuBLAS failures"},
      {"CUDNN_STATUS_", Outcome::kCudaError, "cuDNN failures"},
      {"illegal memory access", Outcome::kCudaError, "sticky CUDA error"},
      {"device-side assert", Outcome::kCudaError, "sticky CUDA error"},
      {"unspecified launch failure", Outcome::kCudaError, "sticky CUDA error"},
  };
  return table;
}

std::optional<Outcome> classify_message(const std::string& message) {
  for (const MessagePattern& p : message_patterns()) {
    if (message.find(p.text) != std::string::npos) return p.outcome;
  }
  return std::nullopt;
}

std::string first_lines(const std::string& message, int max_lines, size_t max_chars) {
  std::string out;
  int lines = 0;
  size_t pos = 0;
  while (pos < message.size() && lines < max_lines) {
    size_t end = message.find('\n', pos);
    if (end == std::string::npos) end = message.size();
    std::string line = message.substr(pos, end - pos);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    pos = end + 1;
    if (line.empty()) continue;
    if (!out.empty()) out += '\n';
    out += line;
    ++lines;
  }
  if (out.size() > max_chars) out = out.substr(0, max_chars - 3) + "...";
  return out;
}

}  // namespace qlc::harness
