// AdamW over the kernels' raw-buffer steps (see optimizer.h).
#include "training/optimizer.h"

#include <ATen/ATen.h>

#include <stdexcept>

#include "device/device_support.h"

namespace qlc::harness {

namespace {

kernels::AdamWStates requested_states(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::kAdamWFp32: return kernels::AdamWStates::kFp32;
    case OptimizerKind::kAdamWParamDtype: return kernels::AdamWStates::kParamDtype;
    case OptimizerKind::kAdamW8bit: return kernels::AdamWStates::k8bit;
    case OptimizerKind::kPagedAdamW8bit: return kernels::AdamWStates::kPaged8bit;
  }
  throw std::invalid_argument("unknown optimizer kind");
}

}  // namespace

struct AdamW::ParamState {
  at::Tensor param;
  kernels::AdamWStateLayout layout;
  std::unique_ptr<kernels::StateAllocator> allocator;
  void* m = nullptr;
  void* v = nullptr;
  void* m_absmax = nullptr;
  void* v_absmax = nullptr;
  int64_t step = 0;  // updates done
  bool created = false;

  ~ParamState() {
    if (!allocator) return;
    if (m) allocator->release(m, layout.moment_bytes(), layout.paged);
    if (v) allocator->release(v, layout.moment_bytes(), layout.paged);
    if (m_absmax) allocator->release(m_absmax, layout.absmax_bytes(), false);
    if (v_absmax) allocator->release(v_absmax, layout.absmax_bytes(), false);
  }

  void create(OptimizerKind kind) {
    const kernels::AdamWStates requested = requested_states(kind);
    const int64_t n = param.numel();
    const bool on_cuda = param.device().is_cuda();
    with_kernel_float_type(param.scalar_type(), [&](auto tag) {
      layout = kernels::adamw_state_layout<decltype(tag)>(requested, n, on_cuda);
    });
    allocator = make_state_allocator(param.device());
    m = allocator->allocate(layout.moment_bytes(), layout.paged);
    v = allocator->allocate(layout.moment_bytes(), layout.paged);
    if (layout.kernel == kernels::AdamWKernel::k8bitStates) {
      m_absmax = allocator->allocate(layout.absmax_bytes(), false);
      v_absmax = allocator->allocate(layout.absmax_bytes(), false);
    }
    created = true;
  }
};

AdamW::AdamW(std::vector<at::Tensor> params, OptimizerKind kind, const kernels::AdamWConfig& config,
             BnbCpuOptimizerErrors bnb_cpu_errors)
    : kind_(kind), config_(config), bnb_cpu_errors_(bnb_cpu_errors) {
  kernels::check_adamw_config(config, 1);
  for (at::Tensor& p : params) {
    if (!p.is_contiguous()) throw std::invalid_argument("AdamW: parameters must be contiguous");
    auto state = std::make_unique<ParamState>();
    state->param = std::move(p);
    states_.push_back(std::move(state));
  }
}

AdamW::~AdamW() = default;

void AdamW::step() {
  for (auto& s : states_) {
    const at::Tensor& grad_ref = s->param.grad();
    if (!grad_ref.defined()) continue;  // untouched parameters are skipped, as in both libraries
    if (!s->created) s->create(kind_);
    if (kind_ != OptimizerKind::kAdamWParamDtype && s->param.device().is_cpu()) {
      const char* error = s->layout.kernel == kernels::AdamWKernel::k8bitStates
                              ? bnb_cpu_errors_.update_8bit
                              : bnb_cpu_errors_.update_32bit;
      if (error != nullptr) throw std::runtime_error(error);
    }
    const at::Tensor grad = grad_ref.contiguous();
    const int64_t t = ++s->step;
    const int64_t n = s->param.numel();
    if (!s->param.device().is_cpu()) {
      DeviceAdamWStep d{s->param, grad, s->layout, s->m, s->v, static_cast<float*>(s->m_absmax),
                        static_cast<float*>(s->v_absmax)};
      cuda_adamw_step(d, config_, t);
      continue;
    }
    with_kernel_float_type(s->param.scalar_type(), [&](auto tag) {
      using P = decltype(tag);
      P* p = static_cast<P*>(s->param.data_ptr());
      const P* g = static_cast<const P*>(grad.data_ptr());
      switch (s->layout.kernel) {
        case kernels::AdamWKernel::kFp32States:
          kernels::adamw_fp32_states_fast<P, P>(p, g, static_cast<float*>(s->m),
                                                static_cast<float*>(s->v), n, config_, t);
          break;
        case kernels::AdamWKernel::kParamStates:
          kernels::adamw_param_states_fast<P>(p, g, static_cast<P*>(s->m), static_cast<P*>(s->v), n,
                                              config_, t);
          break;
        case kernels::AdamWKernel::k8bitStates: {
          const kernels::AdamW8bitStates states{
              static_cast<uint8_t*>(s->m), static_cast<uint8_t*>(s->v),
              static_cast<float*>(s->m_absmax), static_cast<float*>(s->v_absmax)};
          kernels::adamw_8bit_states_fast<P, P>(p, g, states, n, config_, t);
          break;
        }
      }
    });
  }
}

void AdamW::zero_grad() {
  for (auto& s : states_) s->param.mutable_grad() = at::Tensor();
}

int64_t AdamW::state_bytes() const {
  int64_t bytes = 0;
  for (const auto& s : states_) {
    if (s->created) bytes += s->layout.total_bytes();
  }
  return bytes;
}

const kernels::AdamWStateLayout& AdamW::layout(size_t i) const { return states_.at(i)->layout; }

}  // namespace qlc::harness
