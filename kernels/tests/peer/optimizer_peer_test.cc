// Differential test of the AdamW steps against bitsandbytes and PyTorch on CPU (optimizer_peer.py):
// bnb.optim.AdamW8bit / PagedAdamW8bit / AdamW (32-bit) and torch.optim.AdamW, fp32 / bf16 / fp16
// parameters, 8 steps on fresh random inputs, our reference and fast paths each.
//
// What is bit-exact and why: we perform the same fp32 operations in the same order, with an fma
// exactly where PyTorch's vectorized CPU kernels use one (adamw.h), and quantize with the maps
// bitsandbytes built on this machine (stored in the files). So m, v, the 8-bit codes and absmax,
// and every result of torch.optim.AdamW on bf16 / fp16 parameters must match bit for bit; 8-bit
// codes are compared code for code (one ulp anywhere in m or v flips codes within a few steps).
// PyTorch's DEFAULT CPU kernels do not fuse add_(alpha) / addcmul_, so on a machine where it runs
// those the test stops with that reason instead of comparing against different arithmetic.
//
// What is compared with a tolerance and why: a parameter whose update went through PyTorch's fp32
// sqrt (all of bitsandbytes' steps, and torch.optim.AdamW on fp32). That sqrt is MKL's vsSqrt,
// within 1 ulp but not correctly rounded; ours is IEEE's. See sqrt_tolerance for the bound.
#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <cstring>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "peer/peer_files.h"
#include "qlc/kernels/adamw.h"
#include "qlc/kernels/safetensors.h"

namespace qlc::kernels {
namespace {

AdamWConfig config_of(const StFile& f) {
  // The generator writes repr() of the Python floats: strtod gives back the same doubles.
  AdamWConfig c;
  c.lr = std::stod(f.metadata.at("lr"));
  c.beta1 = std::stod(f.metadata.at("beta1"));
  c.beta2 = std::stod(f.metadata.at("beta2"));
  c.eps = std::stod(f.metadata.at("eps"));
  c.weight_decay = std::stod(f.metadata.at("weight_decay"));
  return c;
}

template <class T>
std::vector<T> copy_of(const StTensor& t) {
  std::vector<T> v(static_cast<size_t>(t.numel()));
  EXPECT_EQ(t.data.size(), v.size() * sizeof(T)) << "element size of " << t.dtype;
  std::memcpy(v.data(), t.data.data(), std::min(t.data.size(), v.size() * sizeof(T)));
  return v;
}

// Compares element bits; reports how many differ and the first few. `skip` lists element ranges
// [begin, end) left out of the comparison.
template <class T>
void expect_same_bits(const std::vector<T>& ours, const StTensor& theirs, const std::string& what,
                      const std::vector<std::pair<int64_t, int64_t>>& skip = {}) {
  ASSERT_EQ(theirs.data.size(), ours.size() * sizeof(T)) << what << ": size";
  const auto* a = reinterpret_cast<const uint8_t*>(ours.data());
  const uint8_t* b = theirs.data.data();
  int64_t differ = 0;
  std::ostringstream first;
  for (int64_t i = 0; i < static_cast<int64_t>(ours.size()); ++i) {
    bool skipped = false;
    for (const auto& r : skip) skipped = skipped || (i >= r.first && i < r.second);
    if (skipped || std::memcmp(a + i * sizeof(T), b + i * sizeof(T), sizeof(T)) == 0) continue;
    if (differ < 5) {
      T x, y;
      std::memcpy(&x, a + i * sizeof(T), sizeof(T));
      std::memcpy(&y, b + i * sizeof(T), sizeof(T));
      if constexpr (std::is_same<T, uint8_t>::value) {
        first << " [" << i << "] ours " << int{x} << " theirs " << int{y} << ";";
      } else {
        first << " [" << i << "] ours " << to_float(x) << " theirs " << to_float(y) << ";";
      }
    }
    ++differ;
  }
  EXPECT_EQ(differ, 0) << what << ": " << differ << " of " << ours.size() << " differ:" << first.str();
}

bool torch_uses_fma(const StFile& f) {
  const std::string cap = f.metadata.at("torch_cpu_capability");
  return cap.rfind("AVX2", 0) == 0 || cap.rfind("AVX512", 0) == 0;
}

enum class Path { kReference, kFast };
const char* name(Path path) { return path == Path::kReference ? "reference" : "fast"; }

template <class P>
float ulp_of(float x) {
  // Spacing of P's values at |x| (normal range; subnormals have the spacing of the smallest normal).
  const int mant_bits = std::is_same<P, float>::value ? 23 : (std::is_same<P, Bf16>::value ? 7 : 10);
  const float min_normal = std::is_same<P, Fp16>::value ? 6.103515625e-05f : 1.17549435e-38f;
  const float a = std::max(std::fabs(x), min_normal);
  return std::ldexp(1.0f, std::ilogb(a) - mant_bits);
}

// Bound on |ours - theirs| for a parameter whose steps used PyTorch's fp32 sqrt, accumulated
// step by step from our own run. Their sqrt is within 1 ulp (relative 2^-23) of ours; through
// the update (s / c2, + eps, the quotient: each may then round the other way, 2^-23 more) the
// step's movement |dp| changes by at most 4 * 2^-23 = 2^-21 of itself, and storing p may round
// the other way (fp32: one ulp <= 2^-23 |p|; bf16 / fp16: one ulp of P). A difference carries
// over unchanged (weight decay multiplies it by <= 1) and differences add up over the steps:
//   tol += 2^-20 |dp_t| + 2^-22 |p_t| (+ ulp_P(p_t)),  a factor 2 above that sum.
template <class P>
void add_sqrt_tolerance(const std::vector<P>& before, const std::vector<P>& after, std::vector<float>& tol) {
  for (size_t i = 0; i < after.size(); ++i) {
    const float p0 = to_float(before[i]), p1 = to_float(after[i]);
    float t = std::ldexp(std::fabs(p1 - p0), -20) + std::ldexp(std::fabs(p1), -22);
    if (!std::is_same<P, float>::value) t += ulp_of<P>(p1);
    tol[i] += t;
  }
}

// Parameters within `tol` (NaN where theirs is NaN); reports the worst element and how many
// matched exactly.
template <class P>
void expect_within(const std::vector<P>& ours, const StTensor& theirs_t, const std::vector<float>& tol,
                   const std::vector<std::pair<int64_t, int64_t>>& skip) {
  const std::vector<P> theirs = copy_of<P>(theirs_t);
  ASSERT_EQ(theirs.size(), ours.size());
  int64_t exact = 0, bad = 0, compared = 0;
  double worst = 0.0;
  std::ostringstream first;
  for (int64_t i = 0; i < static_cast<int64_t>(ours.size()); ++i) {
    bool skipped = false;
    for (const auto& r : skip) skipped = skipped || (i >= r.first && i < r.second);
    if (skipped) continue;
    ++compared;
    const float a = to_float(ours[i]), b = to_float(theirs[i]);
    if (std::memcmp(&ours[i], &theirs[i], sizeof(P)) == 0 || (std::isnan(a) && std::isnan(b))) {
      ++exact;
      continue;
    }
    const double d = std::fabs(static_cast<double>(a) - b);
    worst = std::max(worst, d / tol[i]);
    if (!(d <= tol[i])) {
      if (bad < 5) first << " [" << i << "] ours " << a << " theirs " << b << " tol " << tol[i] << ";";
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0) << "p: " << bad << " of " << compared << " outside the sqrt tolerance:" << first.str();
  // The comparison must stay meaningful: most elements exact, the rest well inside the bound.
  EXPECT_GT(exact, compared * 3 / 4) << "p: only " << exact << " of " << compared << " bit-exact";
  std::cout << "  p: " << exact << " of " << compared << " bit-exact, worst |diff| / tol = " << worst << "\n";
}

// Our steps over the file's gradients for tensor `t`, compared with the file's results.
template <class P>
void check_tensor(const StFile& f, const std::string& t, AdamWStates requested, Path path,
                  const std::vector<std::pair<int64_t, int64_t>>& skip = {}) {
  const AdamWConfig config = config_of(f);
  const int steps = std::stoi(f.metadata.at("steps"));
  std::vector<P> p = copy_of<P>(f.at(t + ".p0"));
  const int64_t n = static_cast<int64_t>(p.size());
  const AdamWStateLayout layout = adamw_state_layout<P>(requested, n, /*on_cuda=*/false);
  SCOPED_TRACE(f.source + " " + t + " (" + name(path) + ")");
  std::cout << f.source << " " << t << " (" << name(path) << ")\n";
  EXPECT_FALSE(layout.paged) << "paged states never apply on CPU";
  // Every path except torch.optim.AdamW on bf16 / fp16 goes through PyTorch's fp32 sqrt.
  const bool mkl_sqrt = layout.kernel != AdamWKernel::kParamStates || std::is_same<P, float>::value;
  std::vector<float> tol(static_cast<size_t>(n), 0.0f);
  auto check_p = [&] {
    if (mkl_sqrt) {
      expect_within(p, f.at(t + ".p"), tol, skip);
    } else {
      expect_same_bits(p, f.at(t + ".p"), "p", skip);
    }
  };
  auto gradient = [&](int k) { return copy_of<P>(f.at(t + ".g" + std::to_string(k))); };

  if (layout.kernel == AdamWKernel::k8bitStates) {
    const DynamicMap8 map_m = make_dynamic_map(copy_of<float>(f.at("qmap1")).data());
    const DynamicMap8 map_v = make_dynamic_map(copy_of<float>(f.at("qmap2")).data());
    std::vector<uint8_t> qm(static_cast<size_t>(n)), qv(static_cast<size_t>(n));
    std::vector<float> am_m(static_cast<size_t>(layout.blocks())), am_v(am_m.size());
    const AdamW8bitStates st{qm.data(), qv.data(), am_m.data(), am_v.data(), &map_m, &map_v};
    for (int k = 1; k <= steps; ++k) {
      const std::vector<P> g = gradient(k), before = p;
      if (path == Path::kReference) {
        adamw_8bit_states_reference(p.data(), g.data(), st, n, config, k);
      } else {
        adamw_8bit_states_fast(p.data(), g.data(), st, n, config, k);
      }
      add_sqrt_tolerance(before, p, tol);
    }
    std::vector<std::pair<int64_t, int64_t>> block_skip;  // same ranges, in blocks
    for (const auto& r : skip) block_skip.push_back({r.first / 256, (r.second + 255) / 256});
    check_p();
    expect_same_bits(qm, f.at(t + ".state1"), "m codes", skip);
    expect_same_bits(qv, f.at(t + ".state2"), "v codes", skip);
    expect_same_bits(am_m, f.at(t + ".absmax1"), "m absmax", block_skip);
    expect_same_bits(am_v, f.at(t + ".absmax2"), "v absmax", block_skip);
  } else if (layout.kernel == AdamWKernel::kFp32States) {
    std::vector<float> m(static_cast<size_t>(n)), v(static_cast<size_t>(n));
    for (int k = 1; k <= steps; ++k) {
      const std::vector<P> g = gradient(k), before = p;
      if (path == Path::kReference) {
        adamw_fp32_states_reference(p.data(), g.data(), m.data(), v.data(), n, config, k);
      } else {
        adamw_fp32_states_fast(p.data(), g.data(), m.data(), v.data(), n, config, k);
      }
      add_sqrt_tolerance(before, p, tol);
    }
    check_p();
    expect_same_bits(m, f.at(t + ".state1"), "m", skip);
    expect_same_bits(v, f.at(t + ".state2"), "v", skip);
  } else {
    std::vector<P> m(static_cast<size_t>(n), P{}), v(static_cast<size_t>(n), P{});
    for (int k = 1; k <= steps; ++k) {
      const std::vector<P> g = gradient(k), before = p;
      if (path == Path::kReference) {
        adamw_param_states_reference(p.data(), g.data(), m.data(), v.data(), n, config, k);
      } else {
        adamw_param_states_fast(p.data(), g.data(), m.data(), v.data(), n, config, k);
      }
      add_sqrt_tolerance(before, p, tol);
    }
    check_p();
    expect_same_bits(m, f.at(t + ".state1"), "exp_avg", skip);
    expect_same_bits(v, f.at(t + ".state2"), "exp_avg_sq", skip);
  }
}

template <class P>
void check_file(const StFile& f, Path path) {
  const std::string opt = f.metadata.at("optimizer");
  AdamWStates requested = AdamWStates::kFp32;
  if (opt == "adamw8bit") requested = AdamWStates::k8bit;
  if (opt == "paged_adamw8bit") requested = AdamWStates::kPaged8bit;
  if (opt == "torch_adamw") requested = AdamWStates::kParamDtype;
  for (const std::string t : {"big", "small"}) {
    if (f.tensors.count(t + ".p0") != 0) check_tensor<P>(f, t, requested, path);
  }
}

void check_all(Path path) {
  int checked = 0;
  for (const std::string& file : qlc::testing::peer_files("optimizer_")) {
    const StFile f = read_safetensors(file);
    if (f.metadata.count("nonfinite_blocks") != 0) continue;  // NonFiniteGradients
    if (!torch_uses_fma(f)) {
      GTEST_SKIP() << "PyTorch runs its " << f.metadata.at("torch_cpu_capability")
                   << " kernels here, which do not fuse add_(alpha) / addcmul_: its arithmetic "
                      "differs from the AVX2 / AVX-512 kernels' that we reproduce bit for bit";
    }
    const std::string dtype = f.metadata.at("dtype");
    if (dtype == "fp32") check_file<float>(f, path);
    if (dtype == "bf16") check_file<Bf16>(f, path);
    if (dtype == "fp16") check_file<Fp16>(f, path);
    ++checked;
  }
  EXPECT_GE(checked, 24) << "expected 8-bit, paged, 32-bit and torch cases in fp32, bf16, fp16";
}

TEST(OptimizerPeer, ReferenceMatchesBitsandbytesAndTorch) { check_all(Path::kReference); }
TEST(OptimizerPeer, FastMatchesBitsandbytesAndTorch) { check_all(Path::kFast); }

// The maps bitsandbytes' AdamW8bit built on this machine (which the comparisons above quantize
// with) are our default tables up to the last bits of some entries: torch.linspace's rounding
// depends on the CPU kernels LibTorch picks (dynamic_map.h). Bound: each entry is
// ((a_i + a_i+1) / 2) * 10^-k from two linspace points that may each differ by one rounding
// (FMA or not), then the mean and the scaling each round once more: at most 4 ulps.
TEST(OptimizerPeer, BitsandbytesMapsAreOursUpToLastBits) {
  int checked = 0;
  for (const std::string& file : qlc::testing::peer_files("optimizer_adamw8bit_")) {
    const StFile f = read_safetensors(file);
    for (const bool is_signed : {true, false}) {
      const std::vector<float> code = copy_of<float>(f.at(is_signed ? "qmap1" : "qmap2"));
      ASSERT_EQ(code.size(), 256u);
      int differ = 0;
      for (int i = 0; i < 256; ++i) {
        const float ours = dynamic_map(is_signed).code[i];
        EXPECT_LE(std::fabs(code[i] - ours), 4 * ulp_of<float>(ours)) << file << " code " << i;
        differ += code[i] != ours;
      }
      if (checked == 0) std::cout << (is_signed ? "signed" : "unsigned") << " map: " << differ << " entries differ in their last bits\n";
    }
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

// Paged AdamW8bit on CPU: bitsandbytes falls back to unpaged states, so its results must be the
// unpaged optimizer's bit for bit (we compare each against our one CPU implementation above; here
// the two files against each other, independently of our code).
TEST(OptimizerPeer, PagedEqualsUnpagedOnCpu) {
  int checked = 0;
  for (const std::string& file : qlc::testing::peer_files("optimizer_paged_adamw8bit_")) {
    const StFile paged = read_safetensors(file);
    const std::string unpaged_name = file.substr(0, file.rfind("paged_adamw8bit_")) + "adamw8bit_" +
                                     file.substr(file.rfind("paged_adamw8bit_") + 16);
    const StFile unpaged = read_safetensors(unpaged_name);
    for (const auto& [key, tensor] : paged.tensors) {
      EXPECT_EQ(tensor.data, unpaged.at(key).data) << file << " " << key;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 6);
}

// NaN / Inf gradients: bitsandbytes' CPU path has no check, so they reach p (NaN) and, for an Inf,
// the block's absmax. Ours leaves such an element's p untouched and zeroes its states (its CUDA
// kernel's rule). Blocks that never saw one must still agree bit for bit; in the others we check
// that bitsandbytes did turn p non-finite (so this test notices if its CPU path changes) and that
// ours stayed finite.
TEST(OptimizerPeer, NonFiniteGradients) {
  for (const std::string& file : qlc::testing::peer_files("optimizer_adamw8bit_fp32_nonfinite")) {
    const StFile f = read_safetensors(file);
    if (!torch_uses_fma(f)) GTEST_SKIP() << "see ReferenceMatchesBitsandbytesAndTorch";
    std::vector<std::pair<int64_t, int64_t>> skip;
    std::stringstream blocks(f.metadata.at("nonfinite_blocks"));
    for (std::string b; std::getline(blocks, b, ',');) {
      skip.push_back({std::stoll(b) * 256, std::stoll(b) * 256 + 256});
    }
    ASSERT_FALSE(skip.empty());
    for (Path path : {Path::kReference, Path::kFast}) check_tensor<float>(f, "big", AdamWStates::k8bit, path, skip);

    const std::vector<float> theirs = copy_of<float>(f.at("big.p"));
    int64_t their_nonfinite = 0;
    for (const auto& r : skip)
      for (int64_t i = r.first; i < r.second; ++i) their_nonfinite += std::isfinite(theirs[i]) ? 0 : 1;
    EXPECT_GT(their_nonfinite, 0) << "bitsandbytes' CPU AdamW8bit no longer lets NaN/Inf reach p: "
                                     "revisit adamw.h's note on non-finite gradients";

    // Ours: every parameter finite after the steps.
    const AdamWConfig config = config_of(f);
    std::vector<float> p = copy_of<float>(f.at("big.p0"));
    const int64_t n = static_cast<int64_t>(p.size());
    std::vector<uint8_t> qm(n), qv(n);
    std::vector<float> am_m((n + 255) / 256), am_v(am_m.size());
    const AdamW8bitStates st{qm.data(), qv.data(), am_m.data(), am_v.data()};  // default maps
    for (int k = 1; k <= std::stoi(f.metadata.at("steps")); ++k) {
      const std::vector<float> g = copy_of<float>(f.at("big.g" + std::to_string(k)));
      adamw_8bit_states_reference(p.data(), g.data(), st, n, config, k);
    }
    for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(std::isfinite(p[i])) << "element " << i;
  }
}

}  // namespace
}  // namespace qlc::kernels
