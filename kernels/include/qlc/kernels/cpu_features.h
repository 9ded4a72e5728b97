// Run-time choice of the instruction set the fast CPU kernels use. Detection runs once; the
// QLC_CPU_ISA environment variable (scalar | avx2 | avx512) can only LOWER the level, so that tests
// and A/B benchmarks can compare paths on one machine without ever running an unsupported
// instruction. Code that must pick a path explicitly (tests) passes a CpuIsa instead.
#pragma once

#include <cstdint>
#include <string>

namespace qlc::kernels {

// Ordered: each level implies the ones below it.
enum class CpuIsa : uint8_t {
  kScalar,  // portable C++ (the shared QLC_HD per-element functions)
  kAvx2,    // AVX2 + FMA + F16C
  kAvx512,  // AVX-512 F + BW (+ VL): 4-bit quantization and the 8-bit AdamW step have AVX-512
            // code (the latter also needs VBMI, else it runs AVX2), the rest runs AVX2 code
};

std::string to_string(CpuIsa isa);
// Accepts "scalar", "avx2", "avx512"; throws std::invalid_argument naming the value otherwise.
CpuIsa cpu_isa_from_string(const std::string& name);

// The best level this CPU and OS support (cached after the first call).
CpuIsa detected_cpu_isa();

// `detected` lowered by an override spelled as QLC_CPU_ISA is; null or empty keeps `detected`,
// and a level above `detected` is clamped to it. Throws std::invalid_argument on an unknown name.
CpuIsa select_cpu_isa(CpuIsa detected, const char* override_name);

// The level the fast kernels use by default: select_cpu_isa(detected_cpu_isa(), $QLC_CPU_ISA),
// read once.
CpuIsa active_cpu_isa();
std::string active_cpu_isa_name();

}  // namespace qlc::kernels
