// Where the quantized layers dequantize their weights: one buffer per (dtype, device), kept for
// the model's lifetime, grown to the largest weight put in it and viewed in each weight's shape.
//
// A fresh output per forward and backward costs more than the dequantization itself (the first
// touch of each new page: about 36 ms per 128 MiB on a 2-core EPYC). The layers of a model use a
// dequantized weight one at a time (dequantize, multiply, done), so one buffer per dtype shared by
// all of them removes those costs without keeping a dequantized copy of every layer, which is the
// memory QLoRA exists to save: the model holds at most the largest weight once per dtype, as the
// transient copies did before at their peak.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace qlc::harness {

// A CustomClassHolder so that autograd contexts can keep it (an IValue capsule) for backward.
class DequantBuffers : public torch::CustomClassHolder {
 public:
  // While a Lease lives, its tensors are the buffers' and no other lease exists (a mutex: the
  // layers may be called from several threads; each use is short and sequential anyway).
  class Lease {
   public:
    explicit Lease(DequantBuffers& owner) : owner_(owner), lock_(owner.mutex_) {}
    // A contiguous tensor of `shape` and `dtype` on `device` over the (dtype, device) buffer,
    // valid until the lease ends; its contents are whatever was there last.
    at::Tensor get(at::IntArrayRef shape, at::ScalarType dtype, const at::Device& device);

   private:
    DequantBuffers& owner_;
    std::unique_lock<std::mutex> lock_;
  };

  // Elements allocated per dtype and device, for tests and reports.
  int64_t capacity(at::ScalarType dtype, const at::Device& device) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<int, std::string>, at::Tensor> buffers_;  // (dtype, device) -> flat tensor
};

}  // namespace qlc::harness
