#include "qlc/kernels/cpu_features.h"

#include <cstdlib>
#include <stdexcept>

namespace qlc::kernels {
namespace {

CpuIsa detect() {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  // libgcc's checks include the OS having enabled the YMM / ZMM register state (XCR0).
  __builtin_cpu_init();
#if defined(__clang__)
  // clang (14, Debian 12's) cannot ask for F16C here; every x86 CPU with AVX2 and FMA has it
  // (Intel from Haswell, AMD from Piledriver). Only the sanitized builds (fuzz/) use clang.
  const bool f16c = true;
#else
  const bool f16c = __builtin_cpu_supports("f16c");
#endif
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  const bool avx512 =
      avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  if (avx512) return CpuIsa::kAvx512;
  if (avx2) return CpuIsa::kAvx2;
#endif
  return CpuIsa::kScalar;
}

}  // namespace

std::string to_string(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar: return "scalar";
    case CpuIsa::kAvx2: return "avx2";
    case CpuIsa::kAvx512: return "avx512";
  }
  return "unknown";
}

CpuIsa cpu_isa_from_string(const std::string& name) {
  if (name == "scalar") return CpuIsa::kScalar;
  if (name == "avx2") return CpuIsa::kAvx2;
  if (name == "avx512") return CpuIsa::kAvx512;
  throw std::invalid_argument("unknown CPU ISA '" + name + "' (expected scalar, avx2 or avx512)");
}

CpuIsa detected_cpu_isa() {
  static const CpuIsa isa = detect();
  return isa;
}

CpuIsa select_cpu_isa(CpuIsa detected, const char* override_name) {
  if (override_name == nullptr || *override_name == '\0') return detected;
  CpuIsa wanted;
  try {
    wanted = cpu_isa_from_string(override_name);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("QLC_CPU_ISA: ") + e.what());
  }
  return wanted < detected ? wanted : detected;
}

CpuIsa active_cpu_isa() {
  static const CpuIsa isa = select_cpu_isa(detected_cpu_isa(), std::getenv("QLC_CPU_ISA"));
  return isa;
}

std::string active_cpu_isa_name() { return to_string(active_cpu_isa()); }

}  // namespace qlc::kernels
