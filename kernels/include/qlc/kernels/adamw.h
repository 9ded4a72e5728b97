// AdamW optimizer steps over raw buffers, with the arithmetic bitsandbytes (0.50.x) and PyTorch
// really perform on CPU, so that our parameters and states equal theirs bit for bit (up to
// PyTorch's fp32 sqrt, see below; tests/peer/optimizer_peer_test.cc checks both).
//
// Three state layouts (AdamWStates):
//  - kFp32: bitsandbytes' 32-bit AdamW (bnb.optim.AdamW, and AdamW8bit on tensors under 4096
//    elements): backends/cpu/ops.py _optimizer_update_32bit_cpu.
//  - kParamDtype: torch.optim.AdamW (its single-tensor CPU path) on parameters of dtype T: its
//    states are zeros_like(p), so every in-place op rounds to T. In fp16, eps = 1e-8 is below half
//    the smallest subnormal (2^-25): `denom.add_(eps)` rounds back to 0 wherever sqrt(v) is 0, so
//    an element whose gradients were all 0 computes 0/0 = NaN, and one whose g^2 (1-beta2)
//    underflows computes m/0 = inf. That is what PyTorch does; it is reproduced, not avoided.
//  - k8bit / kPaged8bit: bnb.optim.AdamW8bit / PagedAdamW8bit: m on the signed dynamic map, v on
//    the unsigned one, one fp32 absmax per 256 elements of each (backends/cpu/ops.py
//    _optimizer_update_8bit_blockwise_cpu): dequantize, fp32 update, requantize with the compiled
//    library's quantizer (grid snap, encode_8bit_bnb_library: torch.ops.bitsandbytes.
//    quantize_blockwise on CPU goes to cquantize_blockwise_cpu_fp32).
//
// Facts of bitsandbytes' CPU code that these functions follow (and that differ from its CUDA
// kernels and from QLORA_FACTS.md's summary):
//  - weight decay `p *= 1 - lr*wd` comes BEFORE the Adam update on CPU (the CUDA kernels apply it
//    after), and only when wd > 0;
//  - the 32-bit update is p + fl(m / (sqrt(v) + eps*c2)) * step_size with step_size =
//    -lr*c2/c1; the 8-bit one is p + (-lr/c1) * m / (sqrt(v)/c2 + eps) (c1 = 1 - beta1^t,
//    c2 = sqrt(1 - beta2^t), the scalars computed in double and rounded to fp32 once);
//  - PyTorch's AVX2 / AVX-512 kernels compute `x.add_(y, alpha=a)` as fma(y, a, x) and
//    `x.addcmul_(y, z, value=c)` as fma(c*y, z, x); `lerp_` as fma(w, end - x, x). We call fma
//    explicitly there: one correctly rounded operation on every path (host fmaf, CUDA
//    __fmaf_rn), which keeps the project's no-contraction rule (-ffp-contract=off) intact.
//  - sqrt: we take the IEEE (correctly rounded) square root, as PyTorch's bf16/fp16 kernels and
//    CUDA's sqrtf do. PyTorch's fp32 sqrt on CPU is MKL's vsSqrt (VML_HA): within 1 ulp, not
//    correctly rounded (about 17% of results differ by an ulp on an AMD EPYC), and CPU-dependent.
//    So fp32 results of bitsandbytes' and torch's steps can differ from ours at the ulp level in
//    p; m, v and the 8-bit codes and absmax never depend on the sqrt and stay bit-identical.
//  - NaN/Inf gradients: bitsandbytes' CPU paths have no check (p becomes NaN, and an Inf poisons
//    its block's absmax). Its CUDA 8-bit blockwise kernel zeroes the element's m and v and leaves
//    p untouched (no update, no weight decay); our 8-bit step does that, as the issue asks. The
//    fp32-state path keeps bitsandbytes' behaviour on every backend (no check: NaN reaches p), so
//    AdamW8bit's small tensors still turn NaN, as they do with bitsandbytes.
//
// Paged states: on CPU identical to unpaged (bitsandbytes warns and falls back). On CUDA the
// moment buffers of tensors with >= 1e5 elements go to managed memory (see StateAllocator).
//
// Each step function takes `step` = the 1-based count of updates including this one (bitsandbytes'
// state["step"] after its increment). Parameters may be fp32, bf16 or fp16: read as fp32,
// updated, stored back rounded to nearest even.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>

#include "qlc/kernels/block_scale.h"
#include "qlc/kernels/blockwise_8bit.h"
#include "qlc/kernels/blockwise_fast.h"
#include "qlc/kernels/dynamic_map.h"
#include "qlc/kernels/float_bits.h"
#include "qlc/kernels/host_device.h"

namespace qlc::kernels {

// Hyper-parameters as the Python optimizers hold them (doubles); defaults of bnb.optim.AdamW8bit.
struct AdamWConfig {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

// Throws std::invalid_argument unless lr >= 0, 0 <= beta < 1, eps >= 0, weight_decay >= 0 (the
// checks bitsandbytes' constructors make) and step >= 1.
void check_adamw_config(const AdamWConfig& config, int64_t step);

enum class AdamWStates : uint8_t { kFp32, kParamDtype, k8bit, kPaged8bit };

// bitsandbytes' fixed sizes: the 8-bit states' blocksize, AdamW8bit's min_8bit_size and the size
// from which paged optimizers put a tensor's states in managed memory (get_state_buffer).
constexpr int64_t kAdamW8bitBlocksize = 256;
constexpr int64_t kAdamW8bitMinElements = 4096;
constexpr int64_t kPagedMinElements = 100000;

// ---------------------------------------------------------------------------------------------
// State layout of one tensor.

// Which step function a tensor's states take.
enum class AdamWKernel : uint8_t {
  kFp32States,   // adamw_fp32_states_*: bitsandbytes' 32-bit arithmetic, fp32 m and v
  kParamStates,  // adamw_param_states_*: torch.optim.AdamW, m and v of the parameter's type
  k8bitStates,   // adamw_8bit_states_*: bitsandbytes' 8-bit blockwise states
};

struct AdamWStateLayout {
  AdamWKernel kernel = AdamWKernel::kFp32States;
  int64_t n = 0;               // elements of the parameter
  int64_t state_itemsize = 4;  // bytes per element of each of m and v: 4, 2 or 1
  bool paged = false;          // m and v belong in CUDA managed memory

  // ceil(n / 256) absmax values per moment for 8-bit states, else 0.
  int64_t blocks() const {
    return kernel == AdamWKernel::k8bitStates ? (n + kAdamW8bitBlocksize - 1) / kAdamW8bitBlocksize : 0;
  }
  int64_t moment_bytes() const { return n * state_itemsize; }  // each of m and v
  int64_t absmax_bytes() const { return blocks() * 4; }        // each of m and v; never paged
  int64_t total_bytes() const { return 2 * (moment_bytes() + absmax_bytes()); }
};

// What `requested` gives a tensor of n elements of type P: 8-bit states only from 4096 elements
// (smaller tensors keep fp32 states, as AdamW8bit does); paged only on CUDA and from 1e5 elements
// (on CPU bitsandbytes falls back to unpaged states, and so do we).
template <class P>
AdamWStateLayout adamw_state_layout(AdamWStates requested, int64_t n, bool on_cuda) {
  AdamWStateLayout layout;
  layout.n = n;
  const bool eight_bit = (requested == AdamWStates::k8bit || requested == AdamWStates::kPaged8bit) &&
                         n >= kAdamW8bitMinElements;
  if (eight_bit) {
    layout.kernel = AdamWKernel::k8bitStates;
    layout.state_itemsize = 1;
  } else if (requested == AdamWStates::kParamDtype) {
    layout.kernel = AdamWKernel::kParamStates;
    layout.state_itemsize = static_cast<int64_t>(sizeof(P));
  }
  layout.paged = eight_bit && requested == AdamWStates::kPaged8bit && on_cuda && n >= kPagedMinElements;
  return layout;
}

// Where state buffers come from; all start zero-filled (bitsandbytes' zeros_like / F.fill(0)).
// The host allocator below ignores `paged`. What the CUDA layer's implementation must do, as
// bitsandbytes' paged optimizers do (functional.py get_paged / prefetch_tensor):
//  - paged == true (layout.paged: 8-bit moments of tensors >= 1e5 elements): cudaMallocManaged,
//    and prefetch() = cudaMemPrefetchAsync to the device before each step of that tensor;
//  - never hold more managed memory in total than cudaMemGetInfo reports free on the device at
//    the time of the request: a request past that throws std::bad_alloc (the harness records
//    `oom`) instead of oversubscribing;
//  - everything else (absmax, fp32 / 16-bit states, unpaged 8-bit states): cudaMalloc.
class StateAllocator {
 public:
  virtual ~StateAllocator() = default;
  virtual void* allocate(int64_t bytes, bool paged) = 0;
  virtual void release(void* ptr, int64_t bytes, bool paged) noexcept = 0;
  virtual void prefetch(void* /*ptr*/, int64_t /*bytes*/) {}
};

class HostStateAllocator final : public StateAllocator {
 public:
  void* allocate(int64_t bytes, bool /*paged*/) override {
    void* p = std::calloc(static_cast<size_t>(bytes > 0 ? bytes : 1), 1);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  void release(void* ptr, int64_t /*bytes*/, bool /*paged*/) noexcept override { std::free(ptr); }
};

// The buffers of 8-bit states: codes of m (signed map) and v (unsigned map), and their absmax.
struct AdamW8bitStates {
  uint8_t* m = nullptr;
  uint8_t* v = nullptr;
  float* m_absmax = nullptr;
  float* v_absmax = nullptr;
  // The maps the codes refer to; null: dynamic_map(true) / dynamic_map(false). bitsandbytes builds
  // its maps at run time and their last bits depend on the machine (dynamic_map.h): to continue
  // or compare states made by bitsandbytes, pass the maps it used (make_dynamic_map).
  const DynamicMap8* m_map = nullptr;
  const DynamicMap8* v_map = nullptr;
};

// ---------------------------------------------------------------------------------------------
// Per-step scalars: computed on the host in double as the Python code does, rounded to fp32 once
// (PyTorch's CPU kernels take a Python float scalar as fp32 for fp32 and 16-bit tensors).

struct AdamWScalars {
  float beta1, beta2;
  float one_minus_beta1, one_minus_beta2;  // 1 - beta (also torch's lerp weight)
  bool decay;                              // weight_decay > 0
  float decay_factor;                      // 1 - lr * weight_decay
  float eps;
  float eps_correction2;          // 32-bit: eps * sqrt(1 - beta2^t)
  float step_size;                // 32-bit: -lr * sqrt(1 - beta2^t) / (1 - beta1^t)
  float correction2;              // 8-bit: math.sqrt(1 - beta2^t)
  float neg_lr_over_correction1;  // 8-bit and torch: -lr / (1 - beta1^t)
  float bias_correction2_sqrt;    // torch: (1 - beta2^t) ** 0.5 (pow, not sqrt)
};

inline AdamWScalars adamw_scalars(const AdamWConfig& c, int64_t step) {
  const double t = static_cast<double>(step);
  const double c1 = 1.0 - std::pow(c.beta1, t);
  const double bc2 = 1.0 - std::pow(c.beta2, t);
  const double c2 = std::sqrt(bc2);
  AdamWScalars s;
  s.beta1 = static_cast<float>(c.beta1);
  s.beta2 = static_cast<float>(c.beta2);
  s.one_minus_beta1 = static_cast<float>(1.0 - c.beta1);
  s.one_minus_beta2 = static_cast<float>(1.0 - c.beta2);
  s.decay = c.weight_decay > 0.0;
  s.decay_factor = static_cast<float>(1.0 - c.lr * c.weight_decay);
  s.eps = static_cast<float>(c.eps);
  s.eps_correction2 = static_cast<float>(c.eps * c2);
  s.step_size = static_cast<float>(-c.lr * c2 / c1);
  s.correction2 = static_cast<float>(c2);
  s.neg_lr_over_correction1 = static_cast<float>(-c.lr / c1);
  s.bias_correction2_sqrt = static_cast<float>(std::pow(bc2, 0.5));
  return s;
}

// ---------------------------------------------------------------------------------------------
// Per-element arithmetic, shared by the reference, the fast CPU path and the CUDA kernels. Each
// operation is rounded on its own; fma only where PyTorch's kernels use one.

QLC_HD float fma_rn(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
QLC_HD float sqrt_rn(float x) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(x);
#else
  return std::sqrt(x);
#endif
}
QLC_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
QLC_HD bool is_finite(float x) { return (bits_of(x) & 0x7FFFFFFFu) < 0x7F800000u; }

// Value after rounding to T (what an in-place op on a T tensor leaves).
template <class T>
QLC_HD float round_to(float x) {
  return to_float(from_float<T>(x));
}

// bitsandbytes' moments: m.mul_(beta1).add_(g, alpha=1-beta1); v.mul_(beta2).addcmul_(g, g,
// value=1-beta2).
QLC_HD void bnb_adam_moments(float g, const AdamWScalars& s, float& m, float& v) {
  m = fma_rn(g, s.one_minus_beta1, m * s.beta1);
  v = fma_rn(s.one_minus_beta2 * g, g, v * s.beta2);
}

// bitsandbytes' 32-bit parameter update, given the new moments.
QLC_HD float bnb32_adamw_param(float p, float m, float v, const AdamWScalars& s) {
  if (s.decay) p = p * s.decay_factor;
  const float update = div_rn(m, sqrt_rn(v) + s.eps_correction2);
  return fma_rn(update, s.step_size, p);
}

// bitsandbytes' 8-bit parameter update (addcdiv_: p + (value * m) / denom), given the new moments.
QLC_HD float bnb8_adamw_param(float p, float m, float v, const AdamWScalars& s) {
  const float denom = div_rn(sqrt_rn(v), s.correction2) + s.eps;
  if (s.decay) p = p * s.decay_factor;
  return p + div_rn(s.neg_lr_over_correction1 * m, denom);
}

// One element of the 8-bit step from its dequantized moments. A non-finite gradient zeroes m and
// v and leaves p as it was (returns false: do not store p).
QLC_HD bool bnb8_adamw_element(float g, const AdamWScalars& s, float& p, float& m, float& v) {
  if (!is_finite(g)) {
    m = 0.0f;
    v = 0.0f;
    return false;
  }
  bnb_adam_moments(g, s, m, v);
  p = bnb8_adamw_param(p, m, v, s);
  return true;
}

// A moment's new code under its block's new absmax, as the compiled library quantizes: value times
// 1/absmax, grid snap, nearest code; an all-zero block stores code 0.
QLC_HD uint8_t encode_state_8bit(const DynamicMap8& map, float x, float absmax, float inv_absmax) {
  return absmax == 0.0f ? uint8_t{0} : encode_8bit_bnb_library(map, x * inv_absmax);
}

// torch.optim.AdamW's single-tensor step on one element with p, grad, m and v all of type T; every
// in-place op rounds to T. p, m, v are updated in place.
template <class T>
QLC_HD void torch_adamw_element(T& p, T g_t, T& m_t, T& v_t, const AdamWScalars& s) {
  float p_f = to_float(p);
  if (s.decay) p_f = round_to<T>(p_f * s.decay_factor);  // param.mul_(1 - lr*wd)
  const float g = to_float(g_t);
  // exp_avg.lerp_(grad, w): fma(w, g - m, m) for |w| < 0.5, else fma(w - 1, g - m, g).
  const float m_old = to_float(m_t);
  const float w = s.one_minus_beta1;
  const float diff = g - m_old;
  const bool small = (w < 0.0f ? -w : w) < 0.5f;
  const float m = round_to<T>(small ? fma_rn(w, diff, m_old) : fma_rn(w - 1.0f, diff, g));
  // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1-beta2)
  const float v_scaled = round_to<T>(to_float(v_t) * s.beta2);
  const float v = round_to<T>(fma_rn(s.one_minus_beta2 * g, g, v_scaled));
  // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps): three T tensors in turn.
  float denom = round_to<T>(sqrt_rn(v));
  denom = round_to<T>(div_rn(denom, s.bias_correction2_sqrt));
  denom = round_to<T>(denom + s.eps);
  // param.addcdiv_(exp_avg, denom, value=-step_size)
  p = from_float<T>(p_f + div_rn(s.neg_lr_over_correction1 * m, denom));
  m_t = from_float<T>(m);
  v_t = from_float<T>(v);
}

// ---------------------------------------------------------------------------------------------
// Steps over whole tensors. P: float, Bf16 or Fp16; G likewise; T (param-dtype states) likewise.
// The scalar references are the oracles; the fast versions (threads over 256-element blocks,
// AVX2 where the CPU has it, AVX-512 for the 8-bit step) give the same bits for every input,
// thread count and `config`.

// kFp32: m, v fp32 (n each).
template <class P, class G>
void adamw_fp32_states_reference(P* p, const G* g, float* m, float* v, int64_t n,
                                 const AdamWConfig& config, int64_t step);
template <class P, class G>
void adamw_fp32_states_fast(P* p, const G* g, float* m, float* v, int64_t n,
                            const AdamWConfig& config, int64_t step, const FastConfig& fast = {});

// kParamDtype: torch.optim.AdamW with p, g, m, v all of type T.
template <class T>
void adamw_param_states_reference(T* p, const T* g, T* m, T* v, int64_t n,
                                  const AdamWConfig& config, int64_t step);
template <class T>
void adamw_param_states_fast(T* p, const T* g, T* m, T* v, int64_t n, const AdamWConfig& config,
                             int64_t step, const FastConfig& fast = {});

// k8bit / kPaged8bit: codes n bytes each, absmax ceil(n / 256) floats each. Any n works (the
// 4096-element rule is the caller's, through adamw_state_layout).
template <class P, class G>
void adamw_8bit_states_reference(P* p, const G* g, const AdamW8bitStates& states, int64_t n,
                                 const AdamWConfig& config, int64_t step);
template <class P, class G>
void adamw_8bit_states_fast(P* p, const G* g, const AdamW8bitStates& states, int64_t n,
                            const AdamWConfig& config, int64_t step, const FastConfig& fast = {});

}  // namespace qlc::kernels
