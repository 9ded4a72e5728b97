// AdamW steps (adamw.h) against expectations from outside the code under test: an fp64 reference
// with a derived error bound, the dynamic map's resolution, IEEE facts about bf16 / fp16, Adam's
// own first-step property; plus fast == reference bit for bit. bitsandbytes itself is the peer
// (tests/peer/optimizer_peer_test.cc).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "qlc/kernels/adamw.h"

namespace qlc::kernels {
namespace {

constexpr double kU = 1.0 / (1 << 24);  // fp32 unit roundoff, 2^-24

// Gradients of per-element scale 10^[-2, 0]: two decades inside each 256-block, so the 8-bit maps'
// upper decades are used, as with real gradients.
std::vector<std::vector<float>> gradients(int64_t n, int steps, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> decade(-2.0f, 0.0f);
  std::vector<float> scale(static_cast<size_t>(n)), drift(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    scale[i] = std::pow(10.0f, decade(rng));
    drift[i] = 0.3f * normal(rng);  // a persistent direction, so parameters really travel
  }
  std::vector<std::vector<float>> out(static_cast<size_t>(steps), std::vector<float>(static_cast<size_t>(n)));
  for (auto& g : out)
    for (int64_t i = 0; i < n; ++i) g[i] = scale[i] * (drift[i] + normal(rng));
  return out;
}

std::vector<float> normals(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng);
  return v;
}

// The fp32 scalars bitsandbytes' 32-bit step uses (Python doubles rounded to fp32 once), written
// out here independently of adamw_scalars.
struct Bnb32Scalars {
  double b1, b2, a1, a2, decay, eps_c2, step;
};
Bnb32Scalars bnb32_scalars(const AdamWConfig& c, int t) {
  const double c1 = 1.0 - std::pow(c.beta1, t), c2 = std::sqrt(1.0 - std::pow(c.beta2, t));
  return {static_cast<float>(c.beta1),          static_cast<float>(c.beta2),
          static_cast<float>(1.0 - c.beta1),    static_cast<float>(1.0 - c.beta2),
          static_cast<float>(1.0 - c.lr * c.weight_decay), static_cast<float>(c.eps * c2),
          static_cast<float>(-c.lr * c2 / c1)};
}

// ---------------------------------------------------------------------------------------------
// fp32 states vs fp64.
//
// The fp64 run uses the same formula and the same fp32 scalars, so |p32 - p64| is fp32 rounding
// only. Bound, first order in u = 2^-24 (each fp32 op returns (exact)(1 + d), |d| <= u), carried
// per element from step to step (E_x bounds |x32 - x64|; |x| means |x64| + E_x):
//   m' = fma(g, a1, m*b1):          E_m' = b1 E_m + u (b1|m| + |m'|)
//   v' = fma(a2*g, g, v*b2):        E_v' = b2 E_v + u (a2 g^2 + b2|v| + |v'|)
//   s = sqrt(v'):                   E_s  = min(E_v' / sqrt(v'), sqrt(E_v')) + u|s|
//   d = s + eps*c2:                 E_d  = E_s + u|d|
//   q = m' / d:                     E_q  = (E_m' + |q| E_d) / (d - E_d) + u|q|
//   p' = fma(q, step, p*decay):     E_p' = decay E_p + u decay|p| + |step| E_q + u|p'|
// The neglected terms are O(u^2) relative to these (about 6e-8 of them): the test allows 1% on top.
// fp64's own rounding (2^-53) is 2^-29 below u and left out.
TEST(AdamWFp32States, MatchFp64WithinTheDerivedRoundingBound) {
  const int64_t n = 4096;
  const int steps = 200;
  AdamWConfig config;  // bitsandbytes' defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, wd 1e-2
  const auto grads = gradients(n, steps, 11);
  const std::vector<float> p_init = normals(n, 12);
  std::vector<float> p = p_init, m(n, 0.0f), v(n, 0.0f);
  std::vector<double> p64(p_init.begin(), p_init.end()), m64(n, 0.0), v64(n, 0.0);
  std::vector<double> ep(n, 0.0), em(n, 0.0), ev(n, 0.0);
  for (int t = 1; t <= steps; ++t) {
    adamw_fp32_states_reference(p.data(), grads[t - 1].data(), m.data(), v.data(), n, config, t);
    const Bnb32Scalars s = bnb32_scalars(config, t);
    for (int64_t i = 0; i < n; ++i) {
      const double g = grads[t - 1][i];
      const double m1 = s.b1 * m64[i] + s.a1 * g;
      const double v1 = s.b2 * v64[i] + s.a2 * g * g;
      const double sq = std::sqrt(v1), d = sq + s.eps_c2, q = m1 / d;
      const double p1 = p64[i] * s.decay + s.step * q;
      em[i] = s.b1 * em[i] + kU * (s.b1 * (std::fabs(m64[i]) + em[i]) + std::fabs(m1) + em[i]);
      ev[i] = s.b2 * ev[i] + kU * (s.a2 * g * g + s.b2 * (v64[i] + ev[i]) + v1 + ev[i]);
      const double es = (sq > 0.0 ? std::min(ev[i] / sq, std::sqrt(ev[i])) : std::sqrt(ev[i])) + kU * (sq + ev[i]);
      const double ed = es + kU * (d + es);
      const double eq = (em[i] + std::fabs(q) * ed) / (d - ed) + kU * std::fabs(q);
      ep[i] = s.decay * ep[i] + kU * s.decay * (std::fabs(p64[i]) + ep[i]) + std::fabs(s.step) * eq +
              kU * (std::fabs(p1) + ep[i]);
      m64[i] = m1;
      v64[i] = v1;
      p64[i] = p1;
    }
  }
  double worst = 0.0, largest_bound = 0.0, moved = 0.0;
  int64_t inexact = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double err = std::fabs(p[i] - p64[i]);
    ASSERT_LE(err, 1.01 * ep[i]) << "element " << i << ": p32 " << p[i] << " p64 " << p64[i];
    worst = std::max(worst, err / ep[i]);
    largest_bound = std::max(largest_bound, ep[i]);
    moved = std::max(moved, std::fabs(p64[i] - p_init[i]));
    inexact += err > 0.0;
  }
  std::cout << "fp32 vs fp64 after " << steps << " steps: worst |err| / bound " << worst
            << ", largest bound " << largest_bound << ", largest move " << moved << "\n";
  // The bound must mean something: far below how far the parameters travelled, and fp32 really
  // differs from fp64 (the comparison is not between two copies of one computation).
  EXPECT_LT(largest_bound, 1e-3 * moved);
  EXPECT_GT(inexact, n / 2);
}

// Adam's first step moves every element with g != 0 by lr * sign(g) (m^ / sqrt(v^) = g / |g|,
// eps aside), after weight decay. Tolerance: eps / |g| (< 1e-7 with |g| >= 0.1) plus about eight
// fp32 roundings of the step (8 * 2^-24 < 2^-20), so 2^-19 of lr; and p itself is rounded twice
// (decay, update): 2^-23 |p| < 1e-6 |p|.
template <class Step>
void expect_first_step_moves_by_lr(Step step, double rel_tol) {
  const int64_t n = 5000;
  AdamWConfig config;
  config.lr = 1e-2;
  std::vector<float> g = normals(n, 21), p = normals(n, 22);
  for (float& x : g) x = x < 0.0f ? x - 0.1f : x + 0.1f;  // |g| >= 0.1: eps negligible
  const std::vector<float> p0 = p;
  step(p, g, config);
  for (int64_t i = 0; i < n; ++i) {
    const double decayed = static_cast<double>(p0[i]) * (1.0 - config.lr * config.weight_decay);
    const double expected = decayed - config.lr * (g[i] > 0.0f ? 1.0 : -1.0);
    ASSERT_NEAR(p[i], expected, config.lr * rel_tol + 1e-6 * std::fabs(decayed)) << "element " << i;
  }
}

TEST(AdamW, FirstStepMovesEachElementByTheLearningRate) {
  expect_first_step_moves_by_lr(
      [](std::vector<float>& p, const std::vector<float>& g, const AdamWConfig& c) {
        std::vector<float> m(p.size()), v(p.size());
        adamw_fp32_states_reference(p.data(), g.data(), m.data(), v.data(), p.size(), c, 1);
      },
      std::ldexp(1.0, -19));
  expect_first_step_moves_by_lr(
      [](std::vector<float>& p, const std::vector<float>& g, const AdamWConfig& c) {
        const int64_t n = static_cast<int64_t>(p.size());
        std::vector<uint8_t> qm(n), qv(n);
        std::vector<float> am((n + 255) / 256), av(am.size());
        adamw_8bit_states_reference(p.data(), g.data(), AdamW8bitStates{qm.data(), qv.data(), am.data(), av.data()},
                                    n, c, 1);
      },
      std::ldexp(1.0, -19));
}

// ---------------------------------------------------------------------------------------------
// 8-bit states vs fp32 states over 200 steps.
//
// An 8-bit step is the fp32 step applied to the dequantized previous states; the only difference
// between the runs is that the 8-bit run's states are re-quantized after every step. With
// q_t = Q(m8_t) - m8_t the quantization error, m8_t - m32_t = b1 (m8_t-1 - m32_t-1 + q_t-1), so
//   B_m,t = b1 (B_m,t-1 + |q_m,t-1|) + fp32 rounding (2^-22 (|m8| + |m32|)), same for v with b2,
// bounds |m8 - m32| (asserted). With f(m, v) = (lr / c1) m / (sqrt(v) / c2 + eps) the update,
//   |f(m8, v8) - f(m32, v32)| <= (lr / c1) (B_m / d_lo + |m8| B_d / (d_lo d8)),
//   d8 = sqrt(v8) / c2 + eps, B_d = min(sqrt(B_v), B_v / sqrt(v8)) / c2, d_lo = d8 - B_d (>= eps),
// and weight decay multiplies an existing difference by <= 1, so B_p,T is the sum over steps of
// that plus both runs' fp32 rounding (2^-21 |dp| + 2^-23 |p| each). The quantization errors q are
// measured from the run and each checked against the map's resolution: the library snaps x / A
// to a grid of step 2 / 65535 and takes the nearest code, so |q| <= A (1 / 65535 + half the widest
// code gap within 1 / 65535 of x / A).
// (Below the signed map's lowest code, -0.993, the nearest code is that one: the distance counts.)
// The kernel's x and x * (1/A) differ from this fp64 x / A by a few roundings: 8 u |y| more.
double map_resolution(const DynamicMap8& map, double y) {
  const double r = 1.0 / 65535.0;
  double half_gap = 0.0;
  for (int k = 0; k < 255; ++k) {
    if (map.code[k + 1] >= y - r && map.code[k] <= y + r) {
      half_gap = std::max(half_gap, (static_cast<double>(map.code[k + 1]) - map.code[k]) / 2.0);
    }
  }
  double res = r + half_gap;
  res = std::max(res, static_cast<double>(map.code[0]) - (y - r));
  res = std::max(res, (y + r) - static_cast<double>(map.code[255]));
  return res + 8 * kU * std::fabs(y);
}

TEST(AdamW8bitStates, TrackFp32StatesWithinTheQuantizationBound) {
  const int64_t n = 64 * 256;
  const int steps = 200;
  AdamWConfig config;
  const auto grads = gradients(n, steps, 31);
  const std::vector<float> p_init = normals(n, 32);
  std::vector<float> p32 = p_init, m32(n, 0.0f), v32(n, 0.0f), p8 = p_init;
  std::vector<uint8_t> qm(n), qv(n);
  std::vector<float> am(n / 256, 0.0f), av(n / 256, 0.0f);
  const AdamW8bitStates st{qm.data(), qv.data(), am.data(), av.data()};
  const DynamicMap8& map_m = dynamic_map(true);
  const DynamicMap8& map_v = dynamic_map(false);
  std::vector<double> bm(n, 0.0), bv(n, 0.0), bp(n, 0.0), qerr_m(n, 0.0), qerr_v(n, 0.0);
  for (int t = 1; t <= steps; ++t) {
    const std::vector<float>& g = grads[t - 1];
    // The 8-bit run's pre-quantization moments, from its dequantized states (fp64; the kernel's
    // fp32 values differ by 2 roundings, counted in the resolution check).
    std::vector<double> m8(n), v8(n);
    const Bnb32Scalars s = bnb32_scalars(config, t);
    for (int64_t i = 0; i < n; ++i) {
      m8[i] = s.b1 * decode_8bit(map_m, qm[i], am[i / 256]) + s.a1 * g[i];
      v8[i] = s.b2 * decode_8bit(map_v, qv[i], av[i / 256]) + s.a2 * g[i] * g[i];
    }
    const std::vector<float> p8_before = p8, p32_before = p32;
    adamw_8bit_states_reference(p8.data(), g.data(), st, n, config, t);
    adamw_fp32_states_reference(p32.data(), g.data(), m32.data(), v32.data(), n, config, t);
    const double c1 = 1.0 - std::pow(config.beta1, t), c2 = std::sqrt(1.0 - std::pow(config.beta2, t));
    for (int64_t i = 0; i < n; ++i) {
      bm[i] = s.b1 * (bm[i] + qerr_m[i]) + 2 * kU * (std::fabs(m8[i]) + std::fabs(m32[i]));
      bv[i] = s.b2 * (bv[i] + qerr_v[i]) + 2 * kU * (v8[i] + v32[i]);
      ASSERT_LE(std::fabs(m8[i] - m32[i]), 1.01 * bm[i] + 1e-30) << "m, step " << t << " element " << i;
      ASSERT_LE(std::fabs(v8[i] - v32[i]), 1.01 * bv[i] + 1e-30) << "v, step " << t << " element " << i;
      const double sq = std::sqrt(v8[i]);
      const double b_d = (sq > 0.0 ? std::min(std::sqrt(bv[i]), bv[i] / sq) : std::sqrt(bv[i])) / c2;
      const double d8 = sq / c2 + config.eps;
      const double d_lo = std::max(d8 - b_d, config.eps);
      const double df = config.lr / c1 * (bm[i] / d_lo + std::fabs(m8[i]) * b_d / (d_lo * d8));
      const double rounding = std::ldexp(std::fabs(p8[i] - p8_before[i]) + std::fabs(p32[i] - p32_before[i]), -21) +
                              std::ldexp(std::fabs(p8[i]) + std::fabs(p32[i]), -23);
      bp[i] = bp[i] + df + rounding;
      // This step's quantization errors (they enter the next step), checked against the map.
      const float a_m = am[i / 256], a_v = av[i / 256];
      const double dm = decode_8bit(map_m, qm[i], a_m), dv = decode_8bit(map_v, qv[i], a_v);
      qerr_m[i] = std::fabs(dm - m8[i]);
      qerr_v[i] = std::fabs(dv - v8[i]);
      if (a_m > 0.0f) {
        ASSERT_LE(qerr_m[i], a_m * map_resolution(map_m, m8[i] / a_m)) << "m code, element " << i;
      }
      if (a_v > 0.0f) {
        ASSERT_LE(qerr_v[i], a_v * map_resolution(map_v, v8[i] / a_v)) << "v code, element " << i;
      }
    }
  }
  double worst = 0.0, drift2 = 0.0, moved2 = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double drift = std::fabs(static_cast<double>(p8[i]) - p32[i]);
    ASSERT_LE(drift, bp[i]) << "element " << i << ": p8 " << p8[i] << " p32 " << p32[i];
    worst = std::max(worst, drift / bp[i]);
    drift2 += drift * drift;
    moved2 += (static_cast<double>(p32[i]) - p_init[i]) * (p32[i] - p_init[i]);
  }
  // For the record (not a tolerance): how far the 8-bit run strays overall. Elements two decades
  // below their block's largest gradient keep v in the map's coarse low decades, which dominates.
  std::cout << "8-bit vs fp32 states after " << steps << " steps: rms drift / rms move "
            << std::sqrt(drift2 / moved2) << ", worst drift / bound " << worst << "\n";
}

// ---------------------------------------------------------------------------------------------
// States in the parameter's dtype (torch.optim.AdamW on bf16 / fp16 parameters).

template <class T>
struct Param16 {
  std::vector<T> p, g, m, v;
  Param16(const std::vector<float>& p0, const std::vector<float>& g0) : m(p0.size()), v(p0.size()) {
    for (float x : p0) p.push_back(from_float<T>(x));
    for (float x : g0) g.push_back(from_float<T>(x));
  }
  void step(const AdamWConfig& c, int t) {
    adamw_param_states_reference(p.data(), g.data(), m.data(), v.data(), p.size(), c, t);
  }
};

// fp16: eps = 1e-8 is below half the smallest subnormal (2^-25 = 2.98e-8), so `denom.add_(eps)`
// rounds back to 0 wherever sqrt(v) is 0. An element whose gradients were all 0 then computes
// (-lr/c1 * 0) / 0 = NaN; one with g = 1e-4 has (1 - beta2) g^2 = 1e-11 << 2^-25, so v = 0, while
// m = 0.1 g = 1e-5 is still an fp16 subnormal: m / 0 = inf, p = -inf.
TEST(AdamWParamStates, Fp16EpsUnderflowTurnsUntouchedElementsNaNAndSmallGradientsInf) {
  AdamWConfig config;  // eps 1e-8
  Param16<Fp16> h({0.5f, 0.5f, 0.5f}, {0.0f, 1e-4f, 0.5f});
  h.step(config, 1);
  EXPECT_TRUE(std::isnan(to_float(h.p[0]))) << "g = 0 throughout: 0 / 0";
  EXPECT_EQ(to_float(h.v[1]), 0.0f) << "1e-3 * (1e-4)^2 underflows fp16";
  EXPECT_GT(to_float(h.m[1]), 0.0f) << "0.1 * 1e-4 is an fp16 subnormal";
  EXPECT_EQ(to_float(h.p[1]), -std::numeric_limits<float>::infinity()) << "m / 0";
  EXPECT_TRUE(std::isfinite(to_float(h.p[2]))) << "an ordinary gradient still works";

  // bf16 has fp32's exponent range: eps survives. At p = 1.0 both elements stay exactly 1.0: the
  // untouched one adds 0 / 1e-8 = 0 after decay (1 - 1e-5 rounds back to 1.0), and the tiny
  // gradient's update of lr = 1e-3 is below half the bf16 spacing under 1.0 (2^-9).
  Param16<Bf16> b({1.0f, 1.0f}, {0.0f, 1e-4f});
  b.step(config, 1);
  EXPECT_EQ(to_float(b.p[0]), 1.0f);
  EXPECT_EQ(to_float(b.p[1]), 1.0f);

  // eps = 1e-4 (representable in fp16) avoids both: the documented fix.
  config.eps = 1e-4;
  Param16<Fp16> fixed({0.5f, 0.5f}, {0.0f, 1e-4f});
  fixed.step(config, 1);
  EXPECT_TRUE(std::isfinite(to_float(fixed.p[0])));
  EXPECT_TRUE(std::isfinite(to_float(fixed.p[1])));
}

// bf16 has 8 significant bits: at p = 1.0 the next value down is 1 - 2^-8, so any update smaller
// than half of that (2^-9 = 1.95e-3) rounds away. With a constant gradient Adam's update is lr =
// 1e-3 every step: a bf16 parameter at 1.0 never moves (the harness' `no_learning`), while an fp16
// one (spacing 2^-11 below 1) moves by lr per step up to its rounding: after 20 steps
// |p - (1 - 20 lr)| <= 20 (half-spacing 2^-12 + 1% of lr from fp16 states: 5 roundings of 2^-11).
TEST(AdamWParamStates, Bf16SwallowsUpdatesBelowHalfItsSpacing) {
  AdamWConfig config;
  config.weight_decay = 0.0;
  Param16<Bf16> b({1.0f}, {0.5f});
  Param16<Fp16> h({1.0f}, {0.5f});
  for (int t = 1; t <= 20; ++t) {
    b.step(config, t);
    h.step(config, t);
  }
  EXPECT_EQ(to_float(b.p[0]), 1.0f);
  EXPECT_NEAR(to_float(h.p[0]), 1.0 - 20 * config.lr, 20 * (std::ldexp(1.0, -12) + 0.01 * config.lr));
  EXPECT_LT(to_float(h.p[0]), 0.99f);
}

// ---------------------------------------------------------------------------------------------
// Layouts: AdamW8bit's 4096-element rule, paged states, sizes.

TEST(AdamWLayout, SmallTensorsKeepFp32StatesUnder8bit) {
  for (AdamWStates requested : {AdamWStates::k8bit, AdamWStates::kPaged8bit}) {
    const AdamWStateLayout small = adamw_state_layout<Bf16>(requested, 4095, true);
    EXPECT_EQ(small.kernel, AdamWKernel::kFp32States);
    EXPECT_EQ(small.moment_bytes(), 4095 * 4);
    EXPECT_EQ(small.blocks(), 0);
    EXPECT_FALSE(small.paged);
    const AdamWStateLayout big = adamw_state_layout<Bf16>(requested, 4096, false);
    EXPECT_EQ(big.kernel, AdamWKernel::k8bitStates);
    EXPECT_EQ(big.moment_bytes(), 4096);
    EXPECT_EQ(big.blocks(), 16);
    EXPECT_EQ(big.total_bytes(), 2 * (4096 + 16 * 4));
  }
  EXPECT_EQ(adamw_state_layout<float>(AdamWStates::k8bit, 4097, false).blocks(), 17);  // short last block
  EXPECT_EQ(adamw_state_layout<Fp16>(AdamWStates::kParamDtype, 10, false).kernel, AdamWKernel::kParamStates);
  EXPECT_EQ(adamw_state_layout<Fp16>(AdamWStates::kParamDtype, 10, false).moment_bytes(), 20);
  EXPECT_EQ(adamw_state_layout<Fp16>(AdamWStates::kFp32, 1 << 20, true).kernel, AdamWKernel::kFp32States);
}

TEST(AdamWLayout, PagedOnlyOnCudaAndFrom1e5Elements) {
  EXPECT_FALSE(adamw_state_layout<float>(AdamWStates::kPaged8bit, 1 << 24, false).paged) << "CPU: unpaged";
  EXPECT_FALSE(adamw_state_layout<float>(AdamWStates::kPaged8bit, 99999, true).paged);
  EXPECT_TRUE(adamw_state_layout<float>(AdamWStates::kPaged8bit, 100000, true).paged);
  EXPECT_FALSE(adamw_state_layout<float>(AdamWStates::k8bit, 1 << 24, true).paged);
  // On CPU the paged optimizer is the unpaged one: same layout, hence the same step function.
  const AdamWStateLayout a = adamw_state_layout<float>(AdamWStates::kPaged8bit, 1 << 20, false);
  const AdamWStateLayout b = adamw_state_layout<float>(AdamWStates::k8bit, 1 << 20, false);
  EXPECT_EQ(a.kernel, b.kernel);
  EXPECT_EQ(a.total_bytes(), b.total_bytes());
}

TEST(AdamWLayout, HostAllocatorGivesZeroedBuffers) {
  HostStateAllocator alloc;
  const AdamWStateLayout layout = adamw_state_layout<float>(AdamWStates::k8bit, 5000, false);
  void* m = alloc.allocate(layout.moment_bytes(), layout.paged);
  const auto* bytes = static_cast<const uint8_t*>(m);
  EXPECT_TRUE(std::all_of(bytes, bytes + layout.moment_bytes(), [](uint8_t b) { return b == 0; }));
  alloc.release(m, layout.moment_bytes(), layout.paged);
}

TEST(AdamWConfigCheck, RejectsWhatBitsandbytesRejects) {
  AdamWConfig ok;
  EXPECT_NO_THROW(check_adamw_config(ok, 1));
  auto bad = [](auto edit, int64_t step = 1) {
    AdamWConfig c;
    edit(c);
    EXPECT_THROW(check_adamw_config(c, step), std::invalid_argument);
  };
  bad([](AdamWConfig& c) { c.lr = -1e-3; });
  bad([](AdamWConfig& c) { c.beta1 = 1.0; });
  bad([](AdamWConfig& c) { c.beta2 = -0.1; });
  bad([](AdamWConfig& c) { c.eps = -1.0; });
  bad([](AdamWConfig& c) { c.weight_decay = std::nan(""); });
  bad([](AdamWConfig&) {}, 0);
  std::vector<float> p(4), g(4), m(4), v(4);
  AdamWConfig c;
  c.lr = -1.0;
  EXPECT_THROW(adamw_fp32_states_fast(p.data(), g.data(), m.data(), v.data(), 4, c, 1), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// NaN / Inf gradients.

// 8-bit states: the element's p is left untouched (no update, no weight decay) and its m, v are
// zeroed before re-quantization (bitsandbytes' CUDA kernel; its CPU path has no check). Zero
// snaps to the grid point 1 / 65535 (k = 32768), and the nearest code to it is within one grid
// step: |decoded| <= 2 / 65535 * absmax.
TEST(AdamW8bitStates, NonFiniteGradientLeavesTheElementAndZeroesItsStates) {
  const int64_t n = 4 * 256 + 17;
  AdamWConfig config;
  std::vector<float> p = normals(n, 41), g = normals(n, 42);
  std::vector<uint8_t> qm(n), qv(n);
  std::vector<float> am((n + 255) / 256), av(am.size());
  const AdamW8bitStates st{qm.data(), qv.data(), am.data(), av.data()};
  adamw_8bit_states_reference(p.data(), g.data(), st, n, config, 1);  // non-zero states first
  const std::vector<int64_t> bad = {3, 300, 301, n - 1};
  const float values[] = {std::nanf(""), std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(), std::nanf("")};
  g = normals(n, 43);
  for (size_t k = 0; k < bad.size(); ++k) g[bad[k]] = values[k];
  const std::vector<float> before = p;
  adamw_8bit_states_reference(p.data(), g.data(), st, n, config, 2);
  for (const int64_t i : bad) {
    EXPECT_EQ(std::memcmp(&p[i], &before[i], 4), 0) << "p untouched at " << i;
    const float a_m = am[i / 256], a_v = av[i / 256];
    EXPECT_TRUE(std::isfinite(a_m) && std::isfinite(a_v)) << "absmax not poisoned, block " << i / 256;
    EXPECT_LE(std::fabs(decode_8bit(dynamic_map(true), qm[i], a_m)), 2.0 / 65535.0 * a_m) << i;
    EXPECT_LE(decode_8bit(dynamic_map(false), qv[i], a_v), 2.0 / 65535.0 * a_v) << i;
  }
  for (int64_t i = 0; i < n; ++i) {
    if (std::find(bad.begin(), bad.end(), i) == bad.end()) {
      EXPECT_NE(p[i], before[i]) << "updated: " << i;
    }
  }
  // A later finite gradient updates the element again.
  g = normals(n, 44);
  adamw_8bit_states_reference(p.data(), g.data(), st, n, config, 3);
  for (const int64_t i : bad) EXPECT_TRUE(std::isfinite(p[i]) && p[i] != before[i]) << i;
}

// fp32 states (and AdamW8bit's small tensors) follow bitsandbytes on every backend: no check, the
// NaN reaches m, v and p. torch.optim.AdamW likewise.
TEST(AdamWFp32States, NonFiniteGradientPropagatesAsInBitsandbytes) {
  AdamWConfig config;
  std::vector<float> p = {1.0f, 1.0f, 1.0f}, g = {std::nanf(""), std::numeric_limits<float>::infinity(), 0.5f};
  std::vector<float> m(3), v(3);
  adamw_fp32_states_reference(p.data(), g.data(), m.data(), v.data(), 3, config, 1);
  EXPECT_TRUE(std::isnan(p[0]) && std::isnan(m[0]) && std::isnan(v[0]));
  EXPECT_TRUE(std::isnan(p[1])) << "inf / inf";
  EXPECT_TRUE(std::isfinite(p[2]));
  Param16<Bf16> b({1.0f}, {std::nanf("")});
  b.step(config, 1);
  EXPECT_TRUE(std::isnan(to_float(b.p[0])));
}

// ---------------------------------------------------------------------------------------------
// Fast path == reference, bit for bit, for every type, size, split and instruction set.

template <class T>
std::vector<T> as(const std::vector<float>& x) {
  std::vector<T> out;
  for (float f : x) out.push_back(from_float<T>(f));
  return out;
}

// Values that exercise the edges: zeros, subnormals, huge, and (where asked) NaN / Inf.
std::vector<float> edgy(int64_t n, uint32_t seed, bool nonfinite) {
  std::vector<float> v = normals(n, seed);
  std::mt19937 rng(seed + 1000);
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t r = rng() % 64;
    if (r == 0) v[i] = 0.0f;
    if (r == 1) v[i] *= 1e-30f;
    if (r == 2) v[i] *= 1e4f;
    if (r == 3) v[i] *= 1e-3f;
    if (nonfinite && r == 4) v[i] = (i % 2) ? std::nanf("") : -std::numeric_limits<float>::infinity();
  }
  return v;
}

template <class T>
void expect_bits_equal(const std::vector<T>& a, const std::vector<T>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(std::memcmp(&a[i], &b[i], sizeof(T)), 0) << what << " differs at " << i;
  }
}

std::vector<FastConfig> fast_configs() {
  std::vector<FastConfig> out;
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    for (int64_t chunks : {0, 1, 7}) out.push_back(FastConfig{isa, chunks});
  }
  return out;
}

// The largest spans two of the fast path's default thread chunks (256 blocks each).
const int64_t kSizes[] = {1, 7, 255, 256, 257, 4099, (1 << 16) + 13};

AdamWConfig config_variant(int k) {
  AdamWConfig c;
  if (k == 1) {
    c.weight_decay = 0.0;
    c.beta1 = 0.3;  // torch's lerp takes its other branch
    c.lr = 5e-2;
  }
  return c;
}

template <class P, class G>
void check_fp32_and_8bit_fast() {
  for (int64_t n : kSizes) {
    for (int variant = 0; variant < 2; ++variant) {
      const AdamWConfig config = config_variant(variant);
      const std::vector<P> p0 = as<P>(edgy(n, 51, false));
      for (const FastConfig& fast : fast_configs()) {
        SCOPED_TRACE(::testing::Message() << "n " << n << " variant " << variant << " isa "
                                          << to_string(fast.isa) << " chunks " << fast.chunks);
        // fp32 states (NaN / Inf gradients included: both paths carry them the same way).
        std::vector<P> pr = p0, pf = p0;
        std::vector<float> mr(n), vr(n), mf(n), vf(n);
        // 8-bit states
        std::vector<P> p8r = p0, p8f = p0;
        std::vector<uint8_t> qmr(n), qvr(n), qmf(n), qvf(n);
        const int64_t blocks = (n + 255) / 256;
        std::vector<float> amr(blocks), avr(blocks), amf(blocks), avf(blocks);
        const AdamW8bitStates sr{qmr.data(), qvr.data(), amr.data(), avr.data()};
        const AdamW8bitStates sf{qmf.data(), qvf.data(), amf.data(), avf.data()};
        for (int t = 1; t <= 3; ++t) {
          const std::vector<G> g = as<G>(edgy(n, 60 + t, true));
          adamw_fp32_states_reference(pr.data(), g.data(), mr.data(), vr.data(), n, config, t);
          adamw_fp32_states_fast(pf.data(), g.data(), mf.data(), vf.data(), n, config, t, fast);
          adamw_8bit_states_reference(p8r.data(), g.data(), sr, n, config, t);
          adamw_8bit_states_fast(p8f.data(), g.data(), sf, n, config, t, fast);
        }
        expect_bits_equal(pf, pr, "fp32 states: p");
        expect_bits_equal(mf, mr, "fp32 states: m");
        expect_bits_equal(vf, vr, "fp32 states: v");
        expect_bits_equal(p8f, p8r, "8-bit states: p");
        expect_bits_equal(qmf, qmr, "8-bit states: m codes");
        expect_bits_equal(qvf, qvr, "8-bit states: v codes");
        expect_bits_equal(amf, amr, "8-bit states: m absmax");
        expect_bits_equal(avf, avr, "8-bit states: v absmax");
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  }
}

template <class T>
void check_param_fast() {
  for (int64_t n : kSizes) {
    for (int variant = 0; variant < 2; ++variant) {
      const AdamWConfig config = config_variant(variant);
      const std::vector<T> p0 = as<T>(edgy(n, 71, false));
      for (const FastConfig& fast : fast_configs()) {
        SCOPED_TRACE(::testing::Message() << "n " << n << " variant " << variant << " isa "
                                          << to_string(fast.isa) << " chunks " << fast.chunks);
        std::vector<T> pr = p0, pf = p0, mr(n), vr(n), mf(n), vf(n);
        for (int t = 1; t <= 3; ++t) {
          const std::vector<T> g = as<T>(edgy(n, 80 + t, true));
          adamw_param_states_reference(pr.data(), g.data(), mr.data(), vr.data(), n, config, t);
          adamw_param_states_fast(pf.data(), g.data(), mf.data(), vf.data(), n, config, t, fast);
        }
        expect_bits_equal(pf, pr, "p");
        expect_bits_equal(mf, mr, "m");
        expect_bits_equal(vf, vr, "v");
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  }
}

TEST(AdamWFast, Fp32And8bitStatesMatchTheReferenceFp32Params) {
  check_fp32_and_8bit_fast<float, float>();
  check_fp32_and_8bit_fast<float, Bf16>();
  check_fp32_and_8bit_fast<float, Fp16>();
}
TEST(AdamWFast, Fp32And8bitStatesMatchTheReferenceBf16Params) {
  check_fp32_and_8bit_fast<Bf16, Bf16>();
  check_fp32_and_8bit_fast<Bf16, float>();
}
TEST(AdamWFast, Fp32And8bitStatesMatchTheReferenceFp16Params) {
  check_fp32_and_8bit_fast<Fp16, Fp16>();
  check_fp32_and_8bit_fast<Fp16, float>();
}
TEST(AdamWFast, ParamStatesMatchTheReference) {
  check_param_fast<float>();
  check_param_fast<Bf16>();
  check_param_fast<Fp16>();
}

// Same inputs, same bits, run after run (threads write disjoint blocks; nothing is reduced
// across threads).
TEST(AdamWFast, Deterministic) {
  const int64_t n = (1 << 18) + 5;
  const std::vector<float> p0 = normals(n, 91), g = normals(n, 92);
  std::vector<std::vector<float>> results;
  for (int run = 0; run < 3; ++run) {
    std::vector<float> p = p0;
    std::vector<uint8_t> qm(n), qv(n);
    std::vector<float> am((n + 255) / 256), av(am.size());
    for (int t = 1; t <= 2; ++t) {
      adamw_8bit_states_fast(p.data(), g.data(), AdamW8bitStates{qm.data(), qv.data(), am.data(), av.data()}, n,
                             AdamWConfig{}, t);
    }
    results.push_back(p);
  }
  expect_bits_equal(results[1], results[0], "run 2");
  expect_bits_equal(results[2], results[0], "run 3");
}

// Blocks that take the 8-bit kernels' special paths, for every parameter / gradient type: an
// all-zero block (absmax 0), subnormal moments (1 / absmax overflows), gradients whose square
// overflows (absmax Inf, then NaN moments on the next step), NaN / Inf gradients, a block of
// only NaN, wide magnitudes, and a short last block (n not a multiple of 16); with the default
// maps and with maps given by the caller (no lookup table).
template <class P, class G>
void check_8bit_edge_blocks() {
  constexpr int64_t kBlocks = 8;
  const int64_t n = (kBlocks - 1) * 256 + 13;
  const DynamicMap8 caller_m = make_dynamic_map(dynamic_map(true).code);
  const DynamicMap8 caller_v = make_dynamic_map(dynamic_map(false).code);
  const std::vector<P> p0 = as<P>(edgy(n, 95, false));
  for (bool caller_maps : {false, true}) {
    for (const FastConfig& fast : fast_configs()) {
      SCOPED_TRACE(::testing::Message() << "caller maps " << caller_maps << " isa "
                                        << to_string(fast.isa) << " chunks " << fast.chunks);
      std::vector<P> pr = p0, pf = p0;
      std::vector<uint8_t> qmr(n), qvr(n), qmf(n), qvf(n);
      std::vector<float> amr(kBlocks), avr(kBlocks), amf(kBlocks), avf(kBlocks);
      AdamW8bitStates sr{qmr.data(), qvr.data(), amr.data(), avr.data()};
      AdamW8bitStates sf{qmf.data(), qvf.data(), amf.data(), avf.data()};
      if (caller_maps) {
        sr.m_map = sf.m_map = &caller_m;
        sr.v_map = sf.v_map = &caller_v;
      }
      for (int t = 1; t <= 4; ++t) {
        std::vector<float> g = normals(n, 100 + t);
        for (int64_t i = 0; i < n; ++i) {
          switch (i / 256) {
            case 0: g[i] = 0.0f; break;
            case 1: g[i] *= 1e-39f; break;
            case 2: g[i] *= (i % 3 == 0) ? 1e20f : 1.0f; break;
            case 3:
              if (i % 5 == 0) g[i] = (i % 2) ? std::nanf("") : std::numeric_limits<float>::infinity();
              break;
            case 4: g[i] = std::nanf(""); break;
            case 5: g[i] *= std::pow(10.0f, static_cast<float>(i % 13) - 6.0f); break;
            case 6: g[i] = (t == 2 && i % 7 == 0) ? -3e38f : g[i]; break;
            default: break;
          }
        }
        const std::vector<G> gt = as<G>(g);
        adamw_8bit_states_reference(pr.data(), gt.data(), sr, n, AdamWConfig{}, t);
        adamw_8bit_states_fast(pf.data(), gt.data(), sf, n, AdamWConfig{}, t, fast);
        expect_bits_equal(pf, pr, "p");
        expect_bits_equal(qmf, qmr, "m codes");
        expect_bits_equal(qvf, qvr, "v codes");
        expect_bits_equal(amf, amr, "m absmax");
        expect_bits_equal(avf, avr, "v absmax");
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  }
}

TEST(AdamWFast, EightBitEdgeBlocksMatchTheReference) {
  check_8bit_edge_blocks<float, float>();
  check_8bit_edge_blocks<float, Bf16>();
  check_8bit_edge_blocks<float, Fp16>();
  check_8bit_edge_blocks<Bf16, Bf16>();
  check_8bit_edge_blocks<Bf16, float>();
  check_8bit_edge_blocks<Fp16, Fp16>();
  check_8bit_edge_blocks<Fp16, Bf16>();
}

}  // namespace
}  // namespace qlc::kernels
