// libFuzzer target: the safetensors reader over any bytes. A SafetensorsError ("file: reason") is
// the reader's answer to bad input; any other exception, crash, hang or sanitizer report is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include "qlc/kernels/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    const qlc::kernels::StFile file = qlc::kernels::parse_safetensors(bytes, "fuzz.safetensors");
    for (const auto& [name, tensor] : file.tensors) {
      (void)name;
      (void)tensor.numel();  // the checked arithmetic the reader promised
    }
  } catch (const qlc::kernels::SafetensorsError&) {
  }
  return 0;
}
