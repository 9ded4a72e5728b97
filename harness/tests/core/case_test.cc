// Case model: the one spelling of every axis value, ids and their inverse, outcomes and phases.
#include <gtest/gtest.h>

#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "qlc/harness/case.h"
#include "qlc/harness/outcome.h"

namespace qlc::harness {
namespace {

// The message of the std::invalid_argument that `fn` throws ("" when it throws none).
template <typename Fn>
std::string invalid_argument_message(Fn&& fn) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

// The later axes at their documented defaults (case.h), as id() writes them.
const std::string kDefaultSuffix = "/amp=none/adapter=model/kbit=off/ckpt=off/stack=current/model=tiny";

void expect_contains(const std::string& text, const std::vector<std::string>& parts) {
  for (const auto& p : parts) {
    EXPECT_NE(text.find(p), std::string::npos) << "'" << p << "' in: " << text;
  }
}

// The spellings are the project vocabulary (DESIGN.md, case.h comments), written out here rather
// than derived from the code under test.
TEST(CaseNames, WeightFormatsSpellTheDesignVocabulary) {
  EXPECT_EQ(to_string(WeightFormat::kNone), "none");
  EXPECT_EQ(to_string(WeightFormat::kNf4), "nf4");
  EXPECT_EQ(to_string(WeightFormat::kFp4), "fp4");
  EXPECT_EQ(to_string(WeightFormat::kInt8), "int8");
  EXPECT_EQ(weight_format_from_string("int8"), WeightFormat::kInt8);
  EXPECT_EQ(kAllWeightFormats.size(), 4u);
}

TEST(CaseNames, DtypesAndOptimizersSpellTheDesignVocabulary) {
  EXPECT_EQ(to_string(Dtype::kFp32), "fp32");
  EXPECT_EQ(to_string(Dtype::kFp16), "fp16");
  EXPECT_EQ(to_string(Dtype::kBf16), "bf16");
  EXPECT_EQ(dtype_from_string("bf16"), Dtype::kBf16);
  EXPECT_EQ(to_string(OptimizerKind::kAdamWFp32), "adamw-fp32");
  EXPECT_EQ(to_string(OptimizerKind::kAdamWParamDtype), "adamw-param");
  EXPECT_EQ(to_string(OptimizerKind::kAdamW8bit), "adamw8bit");
  EXPECT_EQ(to_string(OptimizerKind::kPagedAdamW8bit), "paged-adamw8bit");
  EXPECT_EQ(optimizer_from_string("paged-adamw8bit"), OptimizerKind::kPagedAdamW8bit);
  EXPECT_EQ(kAllDtypes.size(), 3u);
  EXPECT_EQ(kAllOptimizers.size(), 4u);
}

TEST(CaseNames, EveryEnumeratorRoundTripsThroughItsName) {
  for (auto v : kAllWeightFormats) EXPECT_EQ(weight_format_from_string(to_string(v)), v);
  for (auto v : kAllDtypes) EXPECT_EQ(dtype_from_string(to_string(v)), v);
  for (auto v : kAllOptimizers) EXPECT_EQ(optimizer_from_string(to_string(v)), v);
}

TEST(CaseNames, ParsersRejectBadValuesListingTheValidOnes) {
  expect_contains(invalid_argument_message([] { weight_format_from_string("nf8"); }),
                  {"'nf8'", "none", "nf4", "fp4", "int8"});
  expect_contains(invalid_argument_message([] { dtype_from_string("bf8"); }),
                  {"'bf8'", "fp32", "fp16", "bf16"});
  expect_contains(invalid_argument_message([] { optimizer_from_string("adam"); }),
                  {"'adam'", "adamw-fp32", "adamw-param", "adamw8bit", "paged-adamw8bit"});
  // Case matters: ids and files have one spelling.
  EXPECT_THROW(dtype_from_string("FP32"), std::invalid_argument);
  EXPECT_THROW(weight_format_from_string(""), std::invalid_argument);
  EXPECT_THROW(optimizer_from_string("adamw8bit "), std::invalid_argument);
}

TEST(CaseNames, FourBitMeansNf4AndFp4) {
  EXPECT_TRUE(is_4bit(WeightFormat::kNf4));
  EXPECT_TRUE(is_4bit(WeightFormat::kFp4));
  EXPECT_FALSE(is_4bit(WeightFormat::kInt8));
  EXPECT_FALSE(is_4bit(WeightFormat::kNone));
}

TEST(CaseDevice, AcceptsCpuAutoAndIndexedCuda) {
  for (const char* d : {"cpu", "auto", "cuda:0", "cuda:1", "cuda:15", "cuda:1234"}) {
    EXPECT_TRUE(is_valid_device(d)) << d;
  }
  for (const char* d : {"", "gpu", "cuda", "cuda:", "cuda:01", "cuda:-1", "cuda:1a", "CPU",
                        "cuda:0 ", "cuda:12345", "mps"}) {
    EXPECT_FALSE(is_valid_device(d)) << d;
  }
}

// DESIGN.md's own example id.
TEST(CaseId, MatchesTheDesignExample) {
  Case c;
  c.device = "cpu";
  c.weights = WeightFormat::kNf4;
  c.double_quant = true;
  c.param_dtype = Dtype::kBf16;
  c.compute_dtype = Dtype::kBf16;
  c.optimizer = OptimizerKind::kAdamW8bit;
  EXPECT_EQ(c.id(), "cpu/nf4-dq/param=bf16/compute=bf16/optim=adamw8bit" + kDefaultSuffix);
  // The header's example: every later axis set.
  c.amp = Amp::kFp16;
  c.adapter_dtype = AdapterDtype::kPeft;
  c.prepare_kbit = true;
  c.grad_checkpointing = GradCheckpointing::kReentrant;
  EXPECT_EQ(c.id(),
            "cpu/nf4-dq/param=bf16/compute=bf16/optim=adamw8bit/amp=fp16/adapter=peft/kbit=on/"
            "ckpt=reentrant/stack=current/model=tiny");
}

TEST(CaseId, DoubleQuantShowsOnlyForFourBit) {
  Case c;
  c.device = "cuda:1";
  c.weights = WeightFormat::kInt8;
  c.double_quant = true;  // meaningless for int8: not part of the id
  c.param_dtype = Dtype::kFp16;
  c.compute_dtype = Dtype::kFp32;
  c.optimizer = OptimizerKind::kPagedAdamW8bit;
  EXPECT_EQ(c.id(), "cuda:1/int8/param=fp16/compute=fp32/optim=paged-adamw8bit" + kDefaultSuffix);
  c.weights = WeightFormat::kFp4;
  EXPECT_EQ(c.id(), "cuda:1/fp4-dq/param=fp16/compute=fp32/optim=paged-adamw8bit" + kDefaultSuffix);
  c.double_quant = false;
  EXPECT_EQ(c.id(), "cuda:1/fp4/param=fp16/compute=fp32/optim=paged-adamw8bit" + kDefaultSuffix);
}

// Every combination of every axis: ids are distinct exactly where the cases differ, and
// from_id inverts id(). Distinct ids per device: (2 four-bit formats x 2 double_quant + none +
// int8) x 3 param x 3 compute x 4 optimizers = 6 x 36 = 216.
TEST(CaseId, RoundTripsForEveryCombination) {
  const std::vector<std::string> devices = {"cpu", "cuda:0", "cuda:7", "auto"};
  std::set<std::string> ids;
  int cases = 0;
  for (const auto& device : devices) {
    for (auto w : kAllWeightFormats) {
      for (bool dq : {false, true}) {
        for (auto p : kAllDtypes) {
          for (auto cd : kAllDtypes) {
            for (auto o : kAllOptimizers) {
              Case c;
              c.device = device;
              c.weights = w;
              c.double_quant = dq;
              c.param_dtype = p;
              c.compute_dtype = cd;
              c.optimizer = o;
              ++cases;
              const std::string id = c.id();
              ids.insert(id);
              const Case back = Case::from_id(id);
              EXPECT_EQ(back.device, device) << id;
              EXPECT_EQ(back.weights, w) << id;
              const bool four_bit = w == WeightFormat::kNf4 || w == WeightFormat::kFp4;
              EXPECT_EQ(back.double_quant, dq && four_bit) << id;
              EXPECT_EQ(back.param_dtype, p) << id;
              EXPECT_EQ(back.compute_dtype, cd) << id;
              EXPECT_EQ(back.optimizer, o) << id;
              EXPECT_EQ(back.id(), id);
              EXPECT_EQ(back, c);
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(cases, 4 * 4 * 2 * 3 * 3 * 4);
  EXPECT_EQ(ids.size(), 4u * 216u);
}

// The later axes: every value of every one of them round-trips, with the core axes fixed.
TEST(CaseId, RoundTripsEveryValueOfTheLaterAxes) {
  std::set<std::string> ids;
  int cases = 0;
  for (auto amp : kAllAmps) {
    for (auto adapter : kAllAdapterDtypes) {
      for (bool kbit : {false, true}) {
        for (auto ckpt : kAllGradCheckpointing) {
          for (auto stack : kAllStacks) {
            for (auto model : kAllModelPresets) {
              Case c;
              c.amp = amp;
              c.adapter_dtype = adapter;
              c.prepare_kbit = kbit;
              c.grad_checkpointing = ckpt;
              c.stack = stack;
              c.model = model;
              ++cases;
              ids.insert(c.id());
              const Case back = Case::from_id(c.id());
              EXPECT_EQ(back.amp, amp);
              EXPECT_EQ(back.adapter_dtype, adapter);
              EXPECT_EQ(back.prepare_kbit, kbit);
              EXPECT_EQ(back.grad_checkpointing, ckpt);
              EXPECT_EQ(back.stack, stack);
              EXPECT_EQ(back.model, model);
              EXPECT_EQ(back, c);
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(cases, 3 * 3 * 2 * 3 * 6 * 4);
  EXPECT_EQ(ids.size(), static_cast<size_t>(cases));
}

// An id of the original five parts reads as the case it always was: the later axes at the
// defaults the old harness ran (no autocast, adapters in the parameter dtype, no prepare, no
// checkpointing, today's casts, the tiny model), and id() writes it in full.
TEST(CaseId, CoreIdsOfFivePartsStillRead) {
  const Case c = Case::from_id("cpu/nf4-dq/param=bf16/compute=fp16/optim=adamw8bit");
  EXPECT_EQ(c.weights, WeightFormat::kNf4);
  EXPECT_TRUE(c.double_quant);
  EXPECT_EQ(c.param_dtype, Dtype::kBf16);
  EXPECT_EQ(c.compute_dtype, Dtype::kFp16);
  EXPECT_EQ(c.optimizer, OptimizerKind::kAdamW8bit);
  EXPECT_EQ(c.amp, Amp::kNone);
  EXPECT_EQ(c.adapter_dtype, AdapterDtype::kModel);
  EXPECT_FALSE(c.prepare_kbit);
  EXPECT_EQ(c.grad_checkpointing, GradCheckpointing::kOff);
  EXPECT_EQ(c.stack, Stack::kCurrent);
  EXPECT_EQ(c.model, ModelPreset::kTiny);
  EXPECT_EQ(c.id(), "cpu/nf4-dq/param=bf16/compute=fp16/optim=adamw8bit" + kDefaultSuffix);
}

TEST(CaseId, FromIdRejectsMalformedIdsNamingThePart) {
  struct Bad {
    const char* id;
    const char* mentions;
  };
  const Bad bad[] = {
      {"", "1 parts"},
      {"cpu/nf4/param=bf16/compute=bf16", "4 parts"},
      {"cpu/nf4/param=bf16/compute=bf16/optim=adamw8bit/", "6 parts"},
      // The later axes come all six or not at all, in order, with valid values.
      {"cpu/nf4/param=bf16/compute=bf16/optim=adamw8bit/amp=fp16", "6 parts"},
      {"cpu/nf4/param=bf16/compute=bf16/optim=adamw8bit/adapter=peft/amp=fp16/kbit=on/"
       "ckpt=off/stack=current/model=tiny",
       "'amp='"},
      {"cpu/nf4/param=bf16/compute=bf16/optim=adamw8bit/amp=fp8/adapter=peft/kbit=on/"
       "ckpt=off/stack=current/model=tiny",
       "'fp8'"},
      {"cpu/nf4/param=bf16/compute=bf16/optim=adamw8bit/amp=fp16/adapter=peft/kbit=yes/"
       "ckpt=off/stack=current/model=tiny",
       "'yes'"},
      {"cpu/nf4/param=bf16/compute=bf16/optim=adamw8bit/amp=fp16/adapter=peft/kbit=on/"
       "ckpt=off/stack=bnb-0.1/model=tiny",
       "'bnb-0.1'"},
      {"cpu/nf4/param=bf16/compute=bf16/optim=adamw8bit/amp=fp16/adapter=peft/kbit=on/"
       "ckpt=off/stack=current/model=huge",
       "'huge'"},
      {"gpu/nf4/param=bf16/compute=bf16/optim=adamw8bit", "unknown device 'gpu'"},
      {"cuda:01/nf4/param=bf16/compute=bf16/optim=adamw8bit", "unknown device 'cuda:01'"},
      {"cpu/nf5/param=bf16/compute=bf16/optim=adamw8bit", "'nf5'"},
      {"cpu/int8-dq/param=bf16/compute=bf16/optim=adamw8bit", "nf4/fp4 only"},
      {"cpu/none-dq/param=bf16/compute=bf16/optim=adamw8bit", "nf4/fp4 only"},
      {"cpu/-dq/param=bf16/compute=bf16/optim=adamw8bit", "'-dq'"},
      {"cpu/nf4/param=bf8/compute=bf16/optim=adamw8bit", "'bf8'"},
      {"cpu/nf4/compute=bf16/param=bf16/optim=adamw8bit", "'param='"},
      {"cpu/nf4/param=bf16/compute=bf16/optimizer=adamw8bit", "'optim='"},
      {"cpu/nf4/param=bf16/compute=bf16/optim=sgd", "'sgd'"},
  };
  for (const auto& b : bad) {
    const std::string msg = invalid_argument_message([&] { Case::from_id(b.id); });
    ASSERT_FALSE(msg.empty()) << "accepted: " << b.id;
    expect_contains(msg, {std::string("'") + b.id + "'", b.mentions});
  }
}

TEST(CaseAxes, PairsInIdOrder) {
  Case c;
  c.device = "cpu";
  c.weights = WeightFormat::kFp4;
  c.double_quant = true;
  c.param_dtype = Dtype::kFp16;
  c.compute_dtype = Dtype::kBf16;
  c.optimizer = OptimizerKind::kAdamWParamDtype;
  c.amp = Amp::kBf16;
  c.grad_checkpointing = GradCheckpointing::kNonReentrant;
  c.stack = Stack::kBnb044;
  c.model = ModelPreset::kOutlier;
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"device", "cpu"},          {"weights", "fp4"},
      {"double_quant", "true"},   {"param_dtype", "fp16"},
      {"compute_dtype", "bf16"},  {"optimizer", "adamw-param"},
      {"amp", "bf16"},            {"adapter_dtype", "model"},
      {"prepare_kbit", "off"},    {"grad_checkpointing", "non-reentrant"},
      {"stack", "bnb-0.44"},      {"model", "outlier"}};
  EXPECT_EQ(c.axes(), expected);
  // case_axes() names the same axes in the same order, with the id keys of id().
  ASSERT_EQ(case_axes().size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(case_axes()[i].name, expected[i].first);
  EXPECT_EQ(case_axes()[3].id_key, "param");
  EXPECT_EQ(case_axes()[8].id_key, "kbit");
  EXPECT_EQ(case_axes()[8].values, (std::vector<std::string>{"off", "on"}));
  // Not applicable to int8: reported as false, as in the id.
  c.weights = WeightFormat::kInt8;
  EXPECT_EQ(c.axes()[2], (std::pair<std::string, std::string>{"double_quant", "false"}));
}

TEST(CaseAxes, SetAxisTakesMatrixSpellingsAndRejectsOthers) {
  Case c;
  set_axis(c, "prepare_kbit", "on");
  set_axis(c, "grad_checkpointing", "reentrant");
  set_axis(c, "stack", "peft-0.5");
  set_axis(c, "adapter_dtype", "base");
  EXPECT_TRUE(c.prepare_kbit);
  EXPECT_EQ(c.grad_checkpointing, GradCheckpointing::kReentrant);
  EXPECT_EQ(c.stack, Stack::kPeft05);
  EXPECT_EQ(c.adapter_dtype, AdapterDtype::kBase);
  expect_contains(invalid_argument_message([&] { set_axis(c, "amp", "fp8"); }),
                  {"'fp8'", "none", "fp16", "bf16"});
  expect_contains(invalid_argument_message([&] { set_axis(c, "prepare_kbit", "true"); }),
                  {"'true'", "off, on"});
  expect_contains(invalid_argument_message([&] { set_axis(c, "precision", "fp16"); }),
                  {"'precision'", "amp", "stack", "model"});
}

TEST(OutcomeNames, SpellTheDesignList) {
  // DESIGN.md "Outcomes", in order, then machine_fault (the machine's faults that are not a
  // verdict on the settings nor our bug: disk full, killed from outside; README "Outcomes").
  const std::vector<std::string> expected = {
      "ok",  "dtype_mismatch", "unsupported_dtype", "unsupported_op", "nan_loss", "no_learning",
      "oom", "cuda_error",     "crash",             "timeout",        "skipped",  "harness_error",
      "machine_fault"};
  ASSERT_EQ(kAllOutcomes.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(to_string(kAllOutcomes[i]), expected[i]);
    EXPECT_EQ(outcome_from_string(expected[i]), kAllOutcomes[i]);
  }
  EXPECT_EQ(to_string(Outcome::kDtypeMismatch), "dtype_mismatch");
  EXPECT_EQ(outcome_from_string("harness_error"), Outcome::kHarnessError);
  expect_contains(invalid_argument_message([] { outcome_from_string("fail"); }),
                  {"'fail'", "ok", "no_learning", "harness_error"});
}

TEST(PhaseNames, SpellTheHeaderList) {
  const std::vector<std::string> expected = {"none",    "setup",    "load",
                                             "forward", "backward", "optimizer"};
  ASSERT_EQ(kAllPhases.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(to_string(kAllPhases[i]), expected[i]);
    EXPECT_EQ(phase_from_string(expected[i]), kAllPhases[i]);
  }
  EXPECT_EQ(to_string(Phase::kBackward), "backward");
  expect_contains(invalid_argument_message([] { phase_from_string("step"); }),
                  {"'step'", "forward", "optimizer"});
}

}  // namespace
}  // namespace qlc::harness
