#include "training/dequant_buffers.h"

#include <ATen/ops/empty.h>

namespace qlc::harness {

at::Tensor DequantBuffers::Lease::get(at::IntArrayRef shape, at::ScalarType dtype, const at::Device& device) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  at::Tensor& flat = owner_.buffers_[{static_cast<int>(dtype), device.str()}];
  if (!flat.defined() || flat.numel() < n) {
    flat = at::Tensor();  // free the smaller one first: never both at once
    flat = at::empty({n}, at::TensorOptions().dtype(dtype).device(device));
  }
  return flat.narrow(0, 0, n).view(shape);
}

int64_t DequantBuffers::capacity(at::ScalarType dtype, const at::Device& device) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = buffers_.find({static_cast<int>(dtype), device.str()});
  return it == buffers_.end() ? 0 : it->second.numel();
}

}  // namespace qlc::harness
