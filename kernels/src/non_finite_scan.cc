// has_non_finite: an integer maximum over the magnitude bits (sign cleared), compared with the
// infinity pattern once at the end. For IEEE formats every NaN and Inf pattern is at or above
// infinity's and every finite one below, so one maximum answers for the whole run.
#include "non_finite_scan.h"

#include <algorithm>
#include <cstring>

#include "blockwise_fast_kernels.h"

#if QLC_FAST_HAVE_AVX2
#include <immintrin.h>
#define QLC_SCAN_AVX2 __attribute__((target("avx2")))
#endif

namespace qlc::kernels::detail {
namespace {

constexpr uint32_t kFp32Inf = 0x7F800000u;
constexpr uint16_t kBf16Inf = 0x7F80u;
constexpr uint16_t kFp16Inf = 0x7C00u;

inline uint32_t magnitude(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u & 0x7FFFFFFFu;
}

uint32_t max_magnitude_scalar(const float* x, int64_t n) {
  uint32_t m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, magnitude(x[i]));
  return m;
}
uint16_t max_magnitude_scalar(const uint16_t* x, int64_t n) {
  uint16_t m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max<uint16_t>(m, x[i] & 0x7FFFu);
  return m;
}

#if QLC_FAST_HAVE_AVX2
QLC_SCAN_AVX2 uint32_t max_magnitude_avx2(const float* x, int64_t n) {
  const __m256i mask = _mm256_set1_epi32(0x7FFFFFFF);
  __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 8));
    m0 = _mm256_max_epu32(m0, _mm256_and_si256(a, mask));
    m1 = _mm256_max_epu32(m1, _mm256_and_si256(b, mask));
  }
  alignas(32) uint32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_max_epu32(m0, m1));
  uint32_t m = max_magnitude_scalar(x + i, n - i);
  for (uint32_t v : lanes) m = std::max(m, v);
  return m;
}

QLC_SCAN_AVX2 uint16_t max_magnitude_avx2(const uint16_t* x, int64_t n) {
  const __m256i mask = _mm256_set1_epi16(0x7FFF);
  __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 16));
    m0 = _mm256_max_epu16(m0, _mm256_and_si256(a, mask));
    m1 = _mm256_max_epu16(m1, _mm256_and_si256(b, mask));
  }
  alignas(32) uint16_t lanes[16];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_max_epu16(m0, m1));
  uint16_t m = max_magnitude_scalar(x + i, n - i);
  for (uint16_t v : lanes) m = std::max(m, v);
  return m;
}
#endif

uint32_t max_magnitude(const float* x, int64_t n, CpuIsa isa) {
#if QLC_FAST_HAVE_AVX2
  if (isa >= CpuIsa::kAvx2) return max_magnitude_avx2(x, n);
#endif
  (void)isa;
  return max_magnitude_scalar(x, n);
}

uint16_t max_magnitude(const uint16_t* x, int64_t n, CpuIsa isa) {
#if QLC_FAST_HAVE_AVX2
  if (isa >= CpuIsa::kAvx2) return max_magnitude_avx2(x, n);
#endif
  (void)isa;
  return max_magnitude_scalar(x, n);
}

}  // namespace

bool has_non_finite(const float* x, int64_t n, CpuIsa isa) {
  return max_magnitude(x, n, isa) >= kFp32Inf;
}
bool has_non_finite(const Bf16* x, int64_t n, CpuIsa isa) {
  return max_magnitude(reinterpret_cast<const uint16_t*>(x), n, isa) >= kBf16Inf;
}
bool has_non_finite(const Fp16* x, int64_t n, CpuIsa isa) {
  return max_magnitude(reinterpret_cast<const uint16_t*>(x), n, isa) >= kFp16Inf;
}

}  // namespace qlc::kernels::detail
