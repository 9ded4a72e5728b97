// Autocast scopes and the GradScaler (see amp.h).
#include "training/amp.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <map>
#include <stdexcept>

namespace qlc::harness {
namespace {

// LibTorch 2.4 made the autocast API device-generic; 1.x spells it per device type.
#define QLC_DEVICE_GENERIC_AUTOCAST (TORCH_VERSION_MAJOR * 100 + TORCH_VERSION_MINOR >= 204)

bool autocast_enabled(c10::DeviceType t) {
#if QLC_DEVICE_GENERIC_AUTOCAST
  return at::autocast::is_autocast_enabled(t);
#else
  return t == c10::DeviceType::CPU ? at::autocast::is_cpu_enabled() : at::autocast::is_enabled();
#endif
}

at::ScalarType autocast_dtype_of(c10::DeviceType t) {
#if QLC_DEVICE_GENERIC_AUTOCAST
  return at::autocast::get_autocast_dtype(t);
#else
  return t == c10::DeviceType::CPU ? at::autocast::get_autocast_cpu_dtype()
                                   : at::autocast::get_autocast_gpu_dtype();
#endif
}

void set_autocast(c10::DeviceType t, bool enabled, at::ScalarType dtype) {
#if QLC_DEVICE_GENERIC_AUTOCAST
  at::autocast::set_autocast_enabled(t, enabled);
  at::autocast::set_autocast_dtype(t, dtype);
#else
  if (t == c10::DeviceType::CPU) {
    at::autocast::set_cpu_enabled(enabled);
    at::autocast::set_autocast_cpu_dtype(dtype);
  } else {
    at::autocast::set_enabled(enabled);
    at::autocast::set_autocast_gpu_dtype(dtype);
  }
#endif
}

}  // namespace

AutocastGuard::AutocastGuard(c10::DeviceType device_type, std::optional<at::ScalarType> dtype)
    : device_type_(device_type) {
  if (!dtype) return;
  // torch.autocast.__enter__: remember, enable with the dtype, count the nesting, cache casts.
  previous_enabled_ = autocast_enabled(device_type);
  previous_dtype_ = autocast_dtype_of(device_type);
  previous_cache_ = at::autocast::is_autocast_cache_enabled();
  set_autocast(device_type, true, *dtype);
  at::autocast::increment_nesting();
  at::autocast::set_autocast_cache_enabled(true);
  active_ = true;
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  // __exit__: the outermost scope drops the cast cache, then the previous state returns.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast(device_type_, previous_enabled_, previous_dtype_);
  at::autocast::set_autocast_cache_enabled(previous_cache_);
}

std::optional<at::ScalarType> active_autocast_dtype(c10::DeviceType device_type) {
  if (!autocast_enabled(device_type)) return std::nullopt;
  return autocast_dtype_of(device_type);
}

std::optional<at::ScalarType> autocast_dtype(Amp amp) {
  switch (amp) {
    case Amp::kNone: return std::nullopt;
    case Amp::kFp16: return at::kHalf;
    case Amp::kBf16: return at::kBFloat16;
  }
  throw std::logic_error("Amp out of range");
}

GradScaler::GradScaler(const at::Device& device)
    : scale_(at::full({1}, 65536.0, at::TensorOptions().dtype(at::kFloat).device(device))),
      growth_tracker_(at::zeros({1}, at::TensorOptions().dtype(at::kInt).device(device))),
      found_inf_(at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(device))) {}

at::Tensor GradScaler::scale(const at::Tensor& loss) const { return loss * scale_; }

bool GradScaler::unscale(const std::vector<at::Tensor>& params) {
  const at::Tensor inv_scale = scale_.to(at::kDouble).reciprocal().to(at::kFloat);
  found_inf_ = at::zeros({1}, scale_.options());
  // _unscale_grads_: in parameter order, the fp16 check first, then one call per dtype group.
  std::map<at::ScalarType, std::vector<at::Tensor>> by_dtype;
  for (const at::Tensor& p : params) {
    const at::Tensor& g = p.grad();
    if (!g.defined()) continue;
    if (g.scalar_type() == at::kHalf) {
      throw std::invalid_argument("Attempting to unscale FP16 gradients.");
    }
    by_dtype[g.scalar_type()].push_back(g);
  }
  for (auto& [dtype, grads] : by_dtype) {
    at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf_, inv_scale);
  }
  return found_inf_.item<float>() != 0.0f;
}

void GradScaler::update() {
  at::_amp_update_scale_(scale_, growth_tracker_, found_inf_, 2.0, 0.5, 2000);
}

double GradScaler::current_scale() const { return scale_.item<double>(); }

}  // namespace qlc::harness
