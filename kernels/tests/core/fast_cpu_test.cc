// The fast CPU path must give the scalar reference's bits for every input: every size class
// (empty, shorter than a vector, odd, a short last block, multi-threaded sizes), every
// blocksize, every dtype, each ISA this machine runs, several thread splits, unaligned buffers,
// and inputs built to hit the hard cases (heavy tails, zero blocks, spikes, extreme magnitudes,
// values exactly on code midpoints, NaN / Inf / signed zeros / subnormals). Outputs carry guard
// bytes past their end, so a write out of bounds is a mismatch too.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "qlc/kernels/blockwise_fast.h"

namespace qlc::kernels {
namespace {

constexpr int64_t kGuard = 64;  // elements after every output
const std::vector<int64_t> kSizes = {0, 1, 2, 31, 63, 64, 65, 777, 4096, 100003, (1 << 20) + 5};
const std::vector<int64_t> kBlocksizes = {32, 64, 128, 256, 512, 1024, 2048, 4096};

template <class T>
std::string dtype_name() {
  if (std::is_same<T, float>::value) return "fp32";
  if (std::is_same<T, Bf16>::value) return "bf16";
  return "fp16";
}

// Every ISA level this machine can run (the fast path clamps higher requests, tested below).
std::vector<CpuIsa> runnable_isas() {
  std::vector<CpuIsa> isas = {CpuIsa::kScalar};
  if (detected_cpu_isa() >= CpuIsa::kAvx2) isas.push_back(CpuIsa::kAvx2);
  if (detected_cpu_isa() >= CpuIsa::kAvx512) isas.push_back(CpuIsa::kAvx512);
  return isas;
}

std::vector<FastConfig> default_configs() {
  std::vector<FastConfig> configs;
  for (CpuIsa isa : runnable_isas()) configs.push_back(FastConfig{isa, 0});
  return configs;
}

std::string describe(const FastConfig& c) {
  return "isa=" + to_string(c.isa) + " chunks=" + std::to_string(c.chunks);
}

// A 64-byte-aligned buffer (as LibTorch allocates), so large outputs take the streaming-store
// path; `offset` elements in, to test unaligned pointers. Filled with a guard pattern.
template <class T>
class Buffer {
 public:
  Buffer(int64_t n, int64_t offset = 0) : n_(n), offset_(offset) {
    const size_t bytes = static_cast<size_t>(n + offset + kGuard) * sizeof(T);
    mem_.reset(static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)));
    std::memset(mem_.get(), 0xA5, bytes);
  }
  T* data() { return reinterpret_cast<T*>(mem_.get()) + offset_; }
  const T* data() const { return reinterpret_cast<const T*>(mem_.get()) + offset_; }
  int64_t size_with_guard() const { return n_ + kGuard; }

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> mem_;
  int64_t n_, offset_;
};

template <class T>
uint32_t element_bits(const T* p, int64_t i) {
  uint32_t u = 0;
  std::memcpy(&u, p + i, sizeof(T));
  return u;
}

// Byte-identical over the payload and the guard; names the first differing element.
template <class T>
::testing::AssertionResult same_bits(const Buffer<T>& want, const Buffer<T>& got) {
  const int64_t n = want.size_with_guard();
  for (int64_t i = 0; i < n; ++i) {
    if (std::memcmp(want.data() + i, got.data() + i, sizeof(T)) != 0) {
      std::ostringstream msg;
      msg << "element " << i << (i >= n - kGuard ? " (guard: written out of bounds)" : "")
          << ": reference 0x" << std::hex << element_bits(want.data(), i) << ", fast 0x"
          << element_bits(got.data(), i);
      return ::testing::AssertionFailure() << msg.str();
    }
  }
  return ::testing::AssertionSuccess();
}

// ----- inputs

enum class Pattern {
  kNormal, kStudentT, kCauchy, kZeroBlocks, kZeroTail, kSpikes, kTiny, kHuge, kMidpoints,
  kBnbGrid, kSpecials,
};
const std::vector<Pattern> kPatterns = {
    Pattern::kNormal, Pattern::kStudentT, Pattern::kCauchy,   Pattern::kZeroBlocks,
    Pattern::kZeroTail, Pattern::kSpikes, Pattern::kTiny,     Pattern::kHuge,
    Pattern::kMidpoints, Pattern::kBnbGrid, Pattern::kSpecials};

std::string to_string(Pattern p) {
  static const char* names[] = {"normal", "student_t3", "cauchy",    "zero_blocks",
                                "zero_tail", "spikes", "tiny", "huge", "midpoints",
                                "bnb_grid",  "specials"};
  return names[static_cast<int>(p)];
}

// `bounds` are the midpoints of the code book under test: the midpoint pattern puts values
// exactly on them (power-of-two absmax: x * (1/absmax) and x / absmax are then exact) and on
// their fp32 neighbours.
std::vector<float> make_data(Pattern p, int64_t n, int64_t blocksize, const float* bounds,
                             int num_bounds, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng);
  const int64_t blocks = (n + blocksize - 1) / blocksize;
  switch (p) {
    case Pattern::kNormal: break;
    case Pattern::kStudentT: {
      std::chi_squared_distribution<float> chi2(3.0f);
      for (float& x : v) x = x / std::sqrt(chi2(rng) / 3.0f);
      break;
    }
    case Pattern::kCauchy:
      for (float& x : v) x = std::tan(3.14159265f * (uniform(rng) - 0.5f));
      break;
    case Pattern::kZeroBlocks:
      for (int64_t b = 0; b < blocks; b += 3)
        for (int64_t i = b * blocksize; i < std::min(n, (b + 1) * blocksize); ++i) v[i] = 0.0f;
      break;
    case Pattern::kZeroTail:
      for (int64_t i = (blocks - 1) * blocksize; i < n; ++i) v[i] = (i % 2) ? 0.0f : -0.0f;
      break;
    case Pattern::kSpikes:
      for (float& x : v) x *= 1e-3f;
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t len = std::min(n, (b + 1) * blocksize) - b * blocksize;
        v[b * blocksize + static_cast<int64_t>(uniform(rng) * len) % len] = (b % 2 ? -1e4f : 3e3f);
      }
      break;
    case Pattern::kTiny:
      for (float& x : v) x *= 1e-30f;
      break;
    case Pattern::kHuge:
      for (float& x : v) x *= 1e30f;
      break;
    case Pattern::kMidpoints:
      for (int64_t b = 0; b < blocks; ++b) {
        const float am = b % 2 ? std::ldexp(1.0f, static_cast<int>(uniform(rng) * 40) - 20)
                               : std::fabs(normal(rng)) + 0.01f;
        const int64_t begin = b * blocksize, end = std::min(n, begin + blocksize);
        for (int64_t i = begin; i < end; ++i) {
          float x = am * bounds[static_cast<int>(uniform(rng) * num_bounds) % num_bounds];
          const int side = static_cast<int>(uniform(rng) * 3);  // on it, just below, just above
          if (side == 1) x = std::nextafter(x, -2.0f * am);
          if (side == 2) x = std::nextafter(x, 2.0f * am);
          v[i] = x;
        }
        v[begin + (b % (end - begin))] = b % 4 < 2 ? am : -am;  // the block's absmax
      }
      break;
    case Pattern::kBnbGrid:  // near the boundaries of bitsandbytes' 65,536-point grid
      for (float& x : v) {
        const int k = static_cast<int>(uniform(rng) * 65535);
        x = -1.0f + 2.0f * (static_cast<float>(k) + 0.5f) / 65535.0f;
        const int side = static_cast<int>(uniform(rng) * 3);
        if (side == 1) x = std::nextafter(x, -2.0f);
        if (side == 2) x = std::nextafter(x, 2.0f);
      }
      for (int64_t b = 0; b < blocks; ++b) v[b * blocksize] = 1.0f;
      break;
    case Pattern::kSpecials: {
      const float nan = std::numeric_limits<float>::quiet_NaN();
      const float inf = std::numeric_limits<float>::infinity();
      uint32_t payload_nan = 0x7FC12345u, signalling_nan = 0x7F800001u, negative_nan = 0xFFE00000u;
      float pn, sn, nn;
      std::memcpy(&pn, &payload_nan, 4);
      std::memcpy(&sn, &signalling_nan, 4);
      std::memcpy(&nn, &negative_nan, 4);
      const float specials[] = {nan, pn, sn, nn, inf, -inf, -0.0f, 0.0f,
                                std::numeric_limits<float>::denorm_min(), -1e-40f,
                                std::numeric_limits<float>::max(),
                                -std::numeric_limits<float>::max(),
                                65504.0f, 65520.0f, 1e-30f};
      for (float& x : v)
        if (uniform(rng) < 0.05f) x = specials[static_cast<int>(uniform(rng) * 15) % 15];
      break;
    }
  }
  return v;
}

template <class T>
std::vector<T> convert(const std::vector<float>& v) {
  std::vector<T> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = from_float<T>(v[i]);
  return out;
}

// Every 16-bit pattern is a valid input too (NaN payloads, subnormals, infinities).
template <class T>
std::vector<T> random_bits16(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<T> v(static_cast<size_t>(n));
  for (T& x : v) x.bits = static_cast<uint16_t>(rng());
  return v;
}

std::vector<uint8_t> random_bytes(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(static_cast<size_t>(n));
  for (uint8_t& x : v) x = static_cast<uint8_t>(rng());
  return v;
}

// Absmax values a dequantizer may be handed: ordinary, zero, negative, subnormal, tiny, huge
// (beyond fp16 and bf16 range once scaled), raw bit patterns (NaN payloads, infinities).
std::vector<float> random_absmax(int64_t blocks, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<float> a(static_cast<size_t>(blocks));
  auto exponent = [&](int lo, int span) { return lo + static_cast<int>(uniform(rng) * span); };
  for (float& x : a) {
    const float r = uniform(rng);
    if (r < 0.5f) x = std::ldexp(uniform(rng) + 0.5f, exponent(-10, 20));
    else if (r < 0.6f) x = 0.0f;
    else if (r < 0.65f) x = -uniform(rng);
    else if (r < 0.75f) x = std::ldexp(uniform(rng), exponent(-150, 30));
    else if (r < 0.85f) x = std::ldexp(uniform(rng) + 0.5f, exponent(14, 113));
    else {
      const uint32_t u = static_cast<uint32_t>(rng());
      std::memcpy(&x, &u, 4);
    }
  }
  return a;
}

// ----- the four comparisons (reference once, fast path for each config)

template <class In>
void check_quantize4(const In* x, int64_t n, int64_t bs, QuantType4 type,
                     const std::vector<FastConfig>& configs, const std::string& what,
                     int64_t out_offset = 0) {
  const int64_t bytes = packed_bytes_4bit(n), blocks = num_blocks(n, bs);
  Buffer<uint8_t> want_q(bytes), got_q(bytes, out_offset);
  Buffer<float> want_a(blocks), got_a(blocks, out_offset);
  quantize_4bit_reference(x, n, bs, type, want_q.data(), want_a.data());
  for (const FastConfig& c : configs) {
    Buffer<uint8_t> q(bytes, out_offset);
    Buffer<float> a(blocks, out_offset);
    quantize_4bit_fast_with(x, n, bs, type, q.data(), a.data(), c);
    ASSERT_TRUE(same_bits(want_q, q)) << what << " " << describe(c) << " (packed codes)";
    ASSERT_TRUE(same_bits(want_a, a)) << what << " " << describe(c) << " (absmax)";
  }
}

template <class Out>
void check_dequantize4(const uint8_t* packed, const float* absmax, int64_t n, int64_t bs,
                       QuantType4 type, const std::vector<FastConfig>& configs,
                       const std::string& what, int64_t out_offset = 0) {
  Buffer<Out> want(n);
  dequantize_4bit_reference(packed, absmax, n, bs, type, want.data());
  for (const FastConfig& c : configs) {
    Buffer<Out> got(n, out_offset);
    dequantize_4bit_fast_with(packed, absmax, n, bs, type, got.data(), c);
    ASSERT_TRUE(same_bits(want, got)) << what << " " << describe(c);
  }
}

template <class In>
void check_quantize8(const In* x, int64_t n, int64_t bs, bool is_signed, Search8 search,
                     const std::vector<FastConfig>& configs, const std::string& what,
                     int64_t out_offset = 0) {
  const int64_t blocks = num_blocks(n, bs);
  Buffer<uint8_t> want_q(n);
  Buffer<float> want_a(blocks);
  quantize_8bit_reference(x, n, bs, is_signed, search, want_q.data(), want_a.data());
  for (const FastConfig& c : configs) {
    Buffer<uint8_t> q(n, out_offset);
    Buffer<float> a(blocks, out_offset);
    quantize_8bit_fast_with(x, n, bs, is_signed, search, q.data(), a.data(), c);
    ASSERT_TRUE(same_bits(want_q, q)) << what << " " << describe(c) << " (codes)";
    ASSERT_TRUE(same_bits(want_a, a)) << what << " " << describe(c) << " (absmax)";
  }
}

template <class Out>
void check_dequantize8(const uint8_t* q, const float* absmax, int64_t n, int64_t bs, bool is_signed,
                       const std::vector<FastConfig>& configs, const std::string& what,
                       int64_t out_offset = 0) {
  Buffer<Out> want(n);
  dequantize_8bit_reference(q, absmax, n, bs, is_signed, want.data());
  for (const FastConfig& c : configs) {
    Buffer<Out> got(n, out_offset);
    dequantize_8bit_fast_with(q, absmax, n, bs, is_signed, got.data(), c);
    ASSERT_TRUE(same_bits(want, got)) << what << " " << describe(c);
  }
}

std::string case_name(const std::string& kernel, const std::string& dtype, int64_t n, int64_t bs,
                      const std::string& data) {
  return kernel + " " + dtype + " n=" + std::to_string(n) + " blocksize=" + std::to_string(bs) +
         " data=" + data;
}

const std::vector<std::pair<bool, Search8>> k8bitModes = {{true, Search8::kBnbCpuLibrary},
                                                           {true, Search8::kNearest},
                                                           {false, Search8::kBnbCpuLibrary},
                                                           {false, Search8::kNearest}};
std::string mode_name(bool is_signed, Search8 search) {
  return std::string(is_signed ? "signed" : "unsigned") +
         (search == Search8::kNearest ? "/nearest" : "/bnb_library");
}

// ----- tests, typed over the input / output dtype

template <class T>
class FastCpu : public ::testing::Test {};
using Dtypes = ::testing::Types<float, Bf16, Fp16>;
TYPED_TEST_SUITE(FastCpu, Dtypes);

std::vector<float> normal_data(int64_t n, uint32_t seed) {
  return make_data(Pattern::kNormal, n, 64, nullptr, 0, seed);
}

const std::vector<QuantType4> kTypes4 = {QuantType4::kNf4, QuantType4::kFp4};

TYPED_TEST(FastCpu, Quantize4MatchesReferenceForEverySizeAndBlocksize) {
  const std::string dt = dtype_name<TypeParam>();
  for (int64_t n : kSizes) {
    const std::vector<TypeParam> x = convert<TypeParam>(normal_data(n, 7));
    for (int64_t bs : kBlocksizes)
      for (QuantType4 type : kTypes4)
        check_quantize4(x.data(), n, bs, type, default_configs(),
                        case_name("quantize " + to_string(type), dt, n, bs, "normal"));
  }
}

TYPED_TEST(FastCpu, Quantize4MatchesReferenceOnHardInputs) {
  const std::string dt = dtype_name<TypeParam>();
  for (QuantType4 type : kTypes4) {
    const Codebook4& cb = codebook4(type);
    for (Pattern p : kPatterns)
      for (int64_t bs : kBlocksizes)
        for (int64_t n : {int64_t{65}, int64_t{777}, 3 * bs, 3 * bs + 777}) {
          const auto seed = static_cast<uint32_t>(n + bs);
          const auto x = convert<TypeParam>(make_data(p, n, bs, cb.bounds, 15, seed));
          check_quantize4(x.data(), n, bs, type, default_configs(),
                          case_name("quantize " + to_string(type), dt, n, bs, to_string(p)));
        }
  }
}

TYPED_TEST(FastCpu, Dequantize4MatchesReferenceForEverySizeBlocksizeAndAbsmax) {
  const std::string dt = dtype_name<TypeParam>();
  for (int64_t n : kSizes) {
    const std::vector<uint8_t> packed = random_bytes(packed_bytes_4bit(n), 11);
    for (int64_t bs : kBlocksizes) {
      const auto absmax = random_absmax(num_blocks(n, bs), static_cast<uint32_t>(bs));
      for (QuantType4 type : kTypes4) {
        const std::string what = case_name("dequantize " + to_string(type), dt, n, bs, "random");
        check_dequantize4<TypeParam>(packed.data(), absmax.data(), n, bs, type, default_configs(),
                                     what);
      }
    }
  }
}

TYPED_TEST(FastCpu, Quantize8MatchesReferenceForEverySizeAndBlocksize) {
  const std::string dt = dtype_name<TypeParam>();
  // Besides bitsandbytes' sizes, blocksizes that are not a multiple of the vector width.
  std::vector<int64_t> blocksizes = kBlocksizes;
  for (int64_t odd : {1, 7, 100, 255}) blocksizes.push_back(odd);
  for (int64_t n : kSizes) {
    const std::vector<TypeParam> x = convert<TypeParam>(normal_data(n, 5));
    for (int64_t bs : blocksizes) {
      // The largest size adds threads and streaming, not new block shapes: three blocksizes do.
      if (n > 100003 && bs != 32 && bs != 256 && bs != 4096) continue;
      for (const auto& [is_signed, search] : k8bitModes) {
        const std::string kernel = "quantize8 " + mode_name(is_signed, search);
        check_quantize8(x.data(), n, bs, is_signed, search, default_configs(),
                        case_name(kernel, dt, n, bs, "normal"));
      }
    }
  }
}

TYPED_TEST(FastCpu, Quantize8MatchesReferenceOnHardInputs) {
  const std::string dt = dtype_name<TypeParam>();
  for (const auto& [is_signed, search] : k8bitModes) {
    const std::string kernel = "quantize8 " + mode_name(is_signed, search);
    const DynamicMap8& map = dynamic_map(is_signed);
    for (Pattern p : kPatterns)
      for (int64_t bs : {int64_t{32}, int64_t{100}, int64_t{256}, int64_t{4096}})
        for (int64_t n : {int64_t{65}, 3 * bs, 3 * bs + 777}) {
          const auto seed = static_cast<uint32_t>(n * bs);
          const auto x = convert<TypeParam>(make_data(p, n, bs, map.bounds, 255, seed));
          check_quantize8(x.data(), n, bs, is_signed, search, default_configs(),
                          case_name(kernel, dt, n, bs, to_string(p)));
        }
  }
}

TYPED_TEST(FastCpu, Dequantize8MatchesReferenceForEverySizeBlocksizeAndAbsmax) {
  const std::string dt = dtype_name<TypeParam>();
  std::vector<int64_t> blocksizes = kBlocksizes;
  for (int64_t odd : {7, 100}) blocksizes.push_back(odd);
  for (int64_t n : kSizes) {
    const std::vector<uint8_t> q = random_bytes(n, 3);
    for (int64_t bs : blocksizes) {
      const auto absmax = random_absmax(num_blocks(n, bs), static_cast<uint32_t>(bs + 1));
      for (bool is_signed : {true, false}) {
        const std::string kernel = is_signed ? "dequantize8 signed" : "dequantize8 unsigned";
        check_dequantize8<TypeParam>(q.data(), absmax.data(), n, bs, is_signed, default_configs(),
                                     case_name(kernel, dt, n, bs, "random"));
      }
    }
  }
}

// Results must not depend on how blocks are split over threads.
TYPED_TEST(FastCpu, EveryThreadSplitGivesTheSameBits) {
  const std::string dt = dtype_name<TypeParam>();
  const int64_t n = (1 << 20) + 5;
  const auto x = convert<TypeParam>(make_data(Pattern::kStudentT, n, 64, nullptr, 0, 9));
  const std::vector<uint8_t> bytes = random_bytes(n, 4);
  std::vector<FastConfig> configs;
  for (CpuIsa isa : runnable_isas())
    for (int64_t chunks : {1, 2, 3, 7, 64, 100000}) configs.push_back(FastConfig{isa, chunks});
  for (int64_t bs : {int64_t{64}, int64_t{4096}}) {
    const std::vector<float> absmax = random_absmax(num_blocks(n, bs), 2);
    const std::string data = "student_t3";
    check_quantize4(x.data(), n, bs, QuantType4::kNf4, configs,
                    case_name("quantize nf4", dt, n, bs, data));
    check_dequantize4<TypeParam>(bytes.data(), absmax.data(), n, bs, QuantType4::kNf4, configs,
                                 case_name("dequantize nf4", dt, n, bs, "random"));
    check_quantize8(x.data(), n, bs, true, Search8::kNearest, configs,
                    case_name("quantize8", dt, n, bs, data));
    check_dequantize8<TypeParam>(bytes.data(), absmax.data(), n, bs, false, configs,
                                 case_name("dequantize8", dt, n, bs, "random"));
  }
}

// Inputs and outputs one element off alignment (no streaming stores, unaligned vector loads).
TYPED_TEST(FastCpu, UnalignedBuffersGiveTheSameBits) {
  const std::string dt = dtype_name<TypeParam>();
  const int64_t n = (1 << 20) + 5, bs = 64;
  const auto x = convert<TypeParam>(make_data(Pattern::kCauchy, n + 1, bs, nullptr, 0, 13));
  const std::vector<uint8_t> bytes = random_bytes(n + 1, 6);
  const std::vector<float> absmax = random_absmax(num_blocks(n, bs) + 1, 8);
  const std::vector<FastConfig> configs = default_configs();
  check_quantize4(x.data() + 1, n, bs, QuantType4::kFp4, configs,
                  case_name("quantize fp4 unaligned", dt, n, bs, "cauchy"), 1);
  check_dequantize4<TypeParam>(bytes.data() + 1, absmax.data() + 1, n, bs, QuantType4::kNf4,
                               configs, case_name("dequantize nf4 unaligned", dt, n, bs, "random"),
                               1);
  check_quantize8(x.data() + 1, n, bs, false, Search8::kBnbCpuLibrary, configs,
                  case_name("quantize8 unaligned", dt, n, bs, "cauchy"), 1);
  check_dequantize8<TypeParam>(bytes.data() + 1, absmax.data() + 1, n, bs, true, configs,
                               case_name("dequantize8 unaligned", dt, n, bs, "random"), 1);
}

// The plain entry points (active ISA, default split) agree with the reference too.
TYPED_TEST(FastCpu, DefaultEntryPointsMatchReference) {
  const int64_t n = 100003, bs = 64, blocks = num_blocks(n, bs);
  const auto x = convert<TypeParam>(normal_data(n, 21));
  Buffer<uint8_t> want_q(n), got_q(n);
  Buffer<float> want_a(blocks), got_a(blocks);
  const QuantType4 nf4 = QuantType4::kNf4;
  quantize_4bit_reference(x.data(), n, bs, nf4, want_q.data(), want_a.data());
  quantize_4bit_fast(x.data(), n, bs, nf4, got_q.data(), got_a.data());
  EXPECT_TRUE(same_bits(want_q, got_q));
  EXPECT_TRUE(same_bits(want_a, got_a));
  Buffer<TypeParam> want(n), got(n);
  dequantize_4bit_reference(want_q.data(), want_a.data(), n, bs, nf4, want.data());
  dequantize_4bit_fast(want_q.data(), want_a.data(), n, bs, nf4, got.data());
  EXPECT_TRUE(same_bits(want, got));
  const Search8 bnb = Search8::kBnbCpuLibrary;
  quantize_8bit_reference(x.data(), n, bs, true, bnb, want_q.data(), want_a.data());
  quantize_8bit_fast(x.data(), n, bs, true, bnb, got_q.data(), got_a.data());
  EXPECT_TRUE(same_bits(want_q, got_q));
  EXPECT_TRUE(same_bits(want_a, got_a));
  dequantize_8bit_reference(want_q.data(), want_a.data(), n, bs, true, want.data());
  dequantize_8bit_fast(want_q.data(), want_a.data(), n, bs, true, got.data());
  EXPECT_TRUE(same_bits(want, got));
}

// 16-bit inputs: every bit pattern, NaN payloads and signalling NaNs included.
TEST(FastCpuRawBits, Every16BitPatternQuantizesLikeTheReference) {
  const int64_t n = 65536 * 2 + 333;
  const auto bf = random_bits16<Bf16>(n, 1);
  const auto fp = random_bits16<Fp16>(n, 2);
  for (int64_t bs : {int64_t{32}, int64_t{256}}) {
    for (QuantType4 type : {QuantType4::kNf4, QuantType4::kFp4}) {
      check_quantize4(bf.data(), n, bs, type, default_configs(),
                      case_name("quantize", "bf16", n, bs, "raw bits"));
      check_quantize4(fp.data(), n, bs, type, default_configs(),
                      case_name("quantize", "fp16", n, bs, "raw bits"));
    }
    for (const auto& [is_signed, search] : k8bitModes) {
      check_quantize8(bf.data(), n, bs, is_signed, search, default_configs(),
                      case_name("quantize8", "bf16", n, bs, "raw bits"));
      check_quantize8(fp.data(), n, bs, is_signed, search, default_configs(),
                      case_name("quantize8", "fp16", n, bs, "raw bits"));
    }
  }
}

// The AVX-512 kernel compares 16-bit inputs with per-block thresholds derived from the midpoints:
// the values right next to every scaled midpoint b * absmax (a few 16-bit steps either way, both
// signs) are where a wrong threshold would show, for absmax values from subnormal to the format's
// largest, including those below the 1e-38 divisor floor.
template <class T>
std::vector<T> threshold_neighbours(const Codebook4& cb, int64_t blocks, int64_t bs, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<T> x(static_cast<size_t>(blocks * bs));
  const float largest = to_float(T{static_cast<uint16_t>(std::is_same<T, Bf16>::value ? 0x7F7F : 0x7BFF)});
  for (int64_t b = 0; b < blocks; ++b) {
    const float r = uniform(rng);
    float am = r < 0.6f   ? std::ldexp(uniform(rng) + 0.5f, static_cast<int>(uniform(rng) * 20) - 10)
               : r < 0.8f ? std::ldexp(uniform(rng) + 0.5f, static_cast<int>(uniform(rng) * 30) - 150)
                          : largest * (0.5f + 0.5f * uniform(rng));
    am = to_float(from_float<T>(am));
    if (am == 0.0f) am = to_float(T{1});
    T* xb = x.data() + b * bs;
    xb[0] = from_float<T>(b % 2 ? am : -am);
    for (int64_t i = 1; i < bs; ++i) {
      const float target = cb.bounds[static_cast<int>(uniform(rng) * 15) % 15] * am;
      const int step = static_cast<int>(uniform(rng) * 7) - 3;  // -3 .. +3 patterns away
      uint16_t bits = from_float<T>(target).bits;
      const bool negative = bits & 0x8000u;
      const int magnitude = (bits & 0x7FFF) + (negative ? -step : step);
      bits = static_cast<uint16_t>(magnitude < 0 ? (0x8000u ^ (bits & 0x8000u)) | (-magnitude)
                                                 : (bits & 0x8000u) | magnitude);
      float v = to_float(T{bits});
      if (!(std::fabs(v) <= am)) v = target;  // stay inside the block's absmax
      xb[i] = from_float<T>(uniform(rng) < 0.1f ? -v : v);
    }
  }
  return x;
}

TEST(FastCpu16bit, ValuesNextToEveryScaledMidpointQuantizeLikeTheReference) {
  for (QuantType4 type : {QuantType4::kNf4, QuantType4::kFp4})
    for (int64_t bs : {int64_t{32}, int64_t{64}, int64_t{256}}) {
      const int64_t blocks = 2000;
      const auto bf = threshold_neighbours<Bf16>(codebook4(type), blocks, bs, 11);
      const auto fp = threshold_neighbours<Fp16>(codebook4(type), blocks, bs, 12);
      check_quantize4(bf.data(), blocks * bs, bs, type, default_configs(),
                      case_name("quantize " + to_string(type), "bf16", blocks * bs, bs, "midpoint neighbours"));
      check_quantize4(fp.data(), blocks * bs, bs, type, default_configs(),
                      case_name("quantize " + to_string(type), "fp16", blocks * bs, bs, "midpoint neighbours"));
    }
}

// The AVX-512 kernel remembers each block's thresholds per thread, in a table indexed by the
// block's largest magnitude pattern modulo 2048. Blocks whose patterns share a slot (p and
// p + 2048), alternating, under both code books and both 16-bit formats in turn on one thread,
// must each get their own thresholds: a stale entry would show as wrong codes next to midpoints.
template <class T>
std::vector<T> colliding_absmax_blocks(const Codebook4& cb, uint16_t base, int64_t blocks, int64_t bs) {
  std::vector<T> x(static_cast<size_t>(blocks * bs));
  for (int64_t b = 0; b < blocks; ++b) {
    const T am_bits{static_cast<uint16_t>(base + (b % 2) * 2048 + (b / 2) % 3)};
    const float am = to_float(am_bits);
    T* xb = x.data() + b * bs;
    xb[0] = am_bits;
    for (int64_t i = 1; i < bs; ++i) {
      const uint16_t near = from_float<T>(cb.bounds[i % 15] * am).bits;
      T v{static_cast<uint16_t>(near + (i % 3) - 1)};  // the pattern below, at, above
      if (!(std::fabs(to_float(v)) <= am)) v = am_bits;
      xb[i] = v;
    }
  }
  return x;
}

TEST(FastCpu16bit, RememberedThresholdsBelongToTheirPatternFormatAndCodeBook) {
  const int64_t blocks = 64, bs = 64;
  for (int round = 0; round < 2; ++round) {
    for (QuantType4 type : {QuantType4::kNf4, QuantType4::kFp4, QuantType4::kNf4}) {
      const auto bf = colliding_absmax_blocks<Bf16>(codebook4(type), 0x3F80, blocks, bs);
      const auto fp = colliding_absmax_blocks<Fp16>(codebook4(type), 0x3800, blocks, bs);
      const std::vector<FastConfig> one_thread = {FastConfig{detected_cpu_isa(), 1}};
      check_quantize4(bf.data(), blocks * bs, bs, type, one_thread,
                      case_name("quantize " + to_string(type), "bf16", blocks * bs, bs, "colliding absmax"));
      check_quantize4(fp.data(), blocks * bs, bs, type, one_thread,
                      case_name("quantize " + to_string(type), "fp16", blocks * bs, bs, "colliding absmax"));
    }
  }
}

// Blocksizes the fast kernels do not vectorize still give the reference's result.
TEST(FastCpuFallback, Quantize4WithAnUnvectorizedBlocksizeMatchesReference) {
  const int64_t n = 1001, bs = 48;
  const auto x = make_data(Pattern::kNormal, n, bs, nullptr, 0, 3);
  check_quantize4(x.data(), n, bs, QuantType4::kNf4, default_configs(), "quantize nf4 bs 48");
  const std::vector<uint8_t> packed = random_bytes(packed_bytes_4bit(n), 1);
  const std::vector<float> absmax = random_absmax(num_blocks(n, bs), 1);
  check_dequantize4<Bf16>(packed.data(), absmax.data(), n, bs, QuantType4::kNf4, default_configs(),
                          "dequantize nf4 bs 48");
}

// ----- what the AVX2 kernels rely on

// The 4-bit kernel finds encode_4bit's count by binary search, which needs ascending midpoints;
// both quantizers drop scale_to_unit's clamp to [-1, 1], which needs every midpoint inside it.
TEST(FastCpuAssumptions, MidpointsAscendInsideMinusOneToOne) {
  for (QuantType4 type : {QuantType4::kNf4, QuantType4::kFp4}) {
    const Codebook4& cb = codebook4(type);
    for (int k = 0; k < 15; ++k) {
      EXPECT_GT(cb.bounds[k], -1.0f) << to_string(type) << " midpoint " << k;
      EXPECT_LT(cb.bounds[k], 1.0f) << to_string(type) << " midpoint " << k;
      if (k > 0) {
        EXPECT_LE(cb.bounds[k - 1], cb.bounds[k]) << to_string(type) << " midpoint " << k;
      }
    }
  }
  for (bool is_signed : {true, false}) {
    const DynamicMap8& map = dynamic_map(is_signed);
    EXPECT_GT(map.bounds[0], -1.0f);
    EXPECT_LT(map.bounds[254], 1.0f);
    for (int k = 1; k < 255; ++k) {
      EXPECT_LE(map.bounds[k - 1], map.bounds[k]) << "8-bit midpoint " << k;
    }
  }
}

// The AVX2 8-bit nearest search looks values up by their top 16 bits: try every such bucket at
// its ends and middle, and both sides of every midpoint, with absmax 1 so that x is the scaled
// value itself.
TEST(FastCpuAssumptions, Nearest8bitSearchMatchesReferenceInEveryBucket) {
  for (bool is_signed : {true, false}) {
    std::vector<float> x;
    for (uint32_t key = 0; key < 65536; ++key)
      for (uint32_t low : {0x0000u, 0x0001u, 0x7FFFu, 0x8000u, 0xFFFEu, 0xFFFFu}) {
        float f;
        const uint32_t u = (key << 16) | low;
        std::memcpy(&f, &u, 4);
        x.push_back(f);
      }
    for (float b : dynamic_map(is_signed).bounds)
      for (float f : {b, std::nextafter(b, -2.0f), std::nextafter(b, 2.0f)}) x.push_back(f);
    const int64_t bs = 256;
    // A scaled value never exceeds 1 in magnitude (|x| <= absmax), so larger ones become +-1
    // (NaN stays); then every block's absmax is 1.
    for (float& f : x)
      if (std::fabs(f) > 1.0f) f = f > 0 ? 1.0f : -1.0f;
    for (size_t i = 0; i < x.size(); i += bs) x[i] = 1.0f;
    check_quantize8(x.data(), static_cast<int64_t>(x.size()), bs, is_signed, Search8::kNearest,
                    default_configs(), is_signed ? "all buckets, signed" : "all buckets, unsigned");
  }
}

// ----- ISA selection

TEST(CpuFeatures, NamesRoundTrip) {
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512})
    EXPECT_EQ(cpu_isa_from_string(to_string(isa)), isa);
  EXPECT_THROW(cpu_isa_from_string("sse2"), std::invalid_argument);
}

TEST(CpuFeatures, OverrideCanOnlyLowerTheLevel) {
  EXPECT_EQ(select_cpu_isa(CpuIsa::kAvx2, nullptr), CpuIsa::kAvx2);
  EXPECT_EQ(select_cpu_isa(CpuIsa::kAvx2, ""), CpuIsa::kAvx2);
  EXPECT_EQ(select_cpu_isa(CpuIsa::kAvx2, "scalar"), CpuIsa::kScalar);
  EXPECT_EQ(select_cpu_isa(CpuIsa::kAvx512, "avx2"), CpuIsa::kAvx2);
  EXPECT_EQ(select_cpu_isa(CpuIsa::kAvx2, "avx512"), CpuIsa::kAvx2);
  EXPECT_EQ(select_cpu_isa(CpuIsa::kScalar, "avx2"), CpuIsa::kScalar);
  try {
    select_cpu_isa(CpuIsa::kAvx2, "avx3");
    FAIL() << "an unknown override must be rejected";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("QLC_CPU_ISA"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("avx3"), std::string::npos) << e.what();
  }
}

TEST(CpuFeatures, ActiveLevelFollowsTheEnvironment) {
  EXPECT_EQ(active_cpu_isa(), select_cpu_isa(detected_cpu_isa(), std::getenv("QLC_CPU_ISA")));
  EXPECT_EQ(active_cpu_isa_name(), to_string(active_cpu_isa()));
  EXPECT_EQ(FastConfig{}.isa, active_cpu_isa());
}

// Detection agrees with what the kernel reports (Linux only; elsewhere nothing to compare with).
TEST(CpuFeatures, DetectionAgreesWithProcCpuinfo) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line) && line.rfind("flags", 0) != 0) {
  }
  if (line.empty()) GTEST_SKIP() << "no /proc/cpuinfo flags line on this system";
  auto has = [&](const std::string& flag) {
    return (line + " ").find(" " + flag + " ") != std::string::npos;
  };
  const bool avx2 = has("avx2") && has("fma") && has("f16c");
  const bool avx512 = avx2 && has("avx512f") && has("avx512bw");
  const CpuIsa expected = avx512 ? CpuIsa::kAvx512 : avx2 ? CpuIsa::kAvx2 : CpuIsa::kScalar;
  EXPECT_EQ(detected_cpu_isa(), expected) << line;
}

TEST(CpuFeatures, FastPathRunsOnlyWhatTheCpuSupports) {
  EXPECT_EQ(fast_kernel_isa(FastConfig{CpuIsa::kScalar, 0}), CpuIsa::kScalar);
  const CpuIsa top = fast_kernel_isa(FastConfig{CpuIsa::kAvx512, 0});
  EXPECT_EQ(top, detected_cpu_isa());  // x86-64 with GCC: every ISA's kernels are compiled
  EXPECT_EQ(fast_kernel_isa(FastConfig{CpuIsa::kAvx2, 0}), std::min(CpuIsa::kAvx2, detected_cpu_isa()));
}

}  // namespace
}  // namespace qlc::kernels
