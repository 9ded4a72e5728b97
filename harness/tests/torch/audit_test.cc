// The dtype audit (verdicts/audit.cc) reports, before any training step, each cause of failure the
// rules predict for the newer axes: fp16 trainables under the GradScaler (F01), a bf16 model under
// fp16 autocast (F10), reentrant checkpointing without input grads (F08), activation outliers
// beyond fp16's range (F04); and reports the same places without a problem where the case works.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "qlc/harness/audit.h"

namespace qlc::harness {
namespace {

std::vector<AuditFinding> audit(const std::string& id) {
  // A folder per test: ctest runs the tests of this file at the same time.
  const std::string work = (std::filesystem::temp_directory_path() /
                            (std::string("qlc_audit_test_") +
                             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
                               .string();
  return audit_case(Case::from_id(id), RunSettings(), work);
}

// The first finding whose tensor contains `tensor` and whose meets contains `meets`; nullptr if none.
const AuditFinding* find(const std::vector<AuditFinding>& findings, const std::string& tensor,
                         const std::string& meets) {
  for (const AuditFinding& f : findings) {
    if (f.tensor.find(tensor) != std::string::npos && f.meets.find(meets) != std::string::npos) return &f;
  }
  return nullptr;
}

std::string dump(const std::vector<AuditFinding>& findings) {
  std::string s;
  for (const AuditFinding& f : findings) s += f.tensor + " [" + f.dtype + "] " + f.meets + " -> " + f.problem + "\n";
  return s;
}

constexpr const char* kTail = "/kbit=off/ckpt=off/stack=current/model=";

TEST(Audit, Fp16TrainablesUnderTheGradScalerAreReported) {
  // Adapters cast to the fp16 model dtype by hand: the GradScaler refuses their gradients (F01).
  const auto bad = audit(std::string("cpu/nf4/param=fp16/compute=fp16/optim=adamw-fp32/amp=fp16/adapter=model") +
                         kTail + "tiny");
  const AuditFinding* f = find(bad, "trainable parameters", "GradScaler");
  ASSERT_NE(f, nullptr) << dump(bad);
  EXPECT_EQ(f->dtype, "fp16");
  EXPECT_NE(f->problem.find("Attempting to unscale FP16 gradients."), std::string::npos) << f->problem;
  // PEFT's own placement keeps them fp32: the same place, no problem.
  const auto good = audit(std::string("cpu/nf4/param=fp16/compute=fp16/optim=adamw-fp32/amp=fp16/adapter=peft") +
                          kTail + "tiny");
  f = find(good, "trainable parameters", "GradScaler");
  ASSERT_NE(f, nullptr) << dump(good);
  EXPECT_EQ(f->dtype, "fp32");
  EXPECT_TRUE(f->problem.empty()) << f->problem;
  // No GradScaler without amp=fp16: nothing to report about it.
  const auto none = audit(std::string("cpu/nf4/param=fp16/compute=fp16/optim=adamw-fp32/amp=none/adapter=model") +
                          kTail + "tiny");
  EXPECT_EQ(find(none, "trainable parameters", "GradScaler"), nullptr) << dump(none);
}

TEST(Audit, Bf16ModelUnderFp16AutocastIsReported) {
  const auto bad = audit(std::string("cpu/nf4/param=bf16/compute=bf16/optim=adamw-fp32/amp=fp16/adapter=peft") +
                         kTail + "tiny");
  const AuditFinding* f = find(bad, "torch_dtype=bfloat16", "fp16 autocast");
  ASSERT_NE(f, nullptr) << dump(bad);
  EXPECT_FALSE(f->problem.empty());
  const auto good = audit(std::string("cpu/nf4/param=bf16/compute=bf16/optim=adamw-fp32/amp=bf16/adapter=peft") +
                          kTail + "tiny");
  EXPECT_EQ(find(good, "torch_dtype=bfloat16", "fp16 autocast"), nullptr) << dump(good);
}

TEST(Audit, ReentrantCheckpointingWithoutInputGradsIsReported) {
  const std::string head = "cpu/nf4/param=fp32/compute=fp32/optim=adamw-fp32/amp=none/adapter=peft/kbit=";
  const auto bad = audit(head + "off/ckpt=reentrant/stack=current/model=tiny");
  const AuditFinding* f = find(bad, "embedding output", "reentrant");
  ASSERT_NE(f, nullptr) << dump(bad);
  EXPECT_NE(f->problem.find("requires_grad"), std::string::npos) << f->problem;
  // prepare_model_for_kbit_training enables input grads on a quantized model.
  const auto good = audit(head + "on/ckpt=reentrant/stack=current/model=tiny");
  f = find(good, "embedding output", "reentrant");
  ASSERT_NE(f, nullptr) << dump(good);
  EXPECT_TRUE(f->problem.empty()) << f->problem;
  // Non-reentrant checkpointing needs no input grads: nothing to report.
  const auto other = audit(head + "off/ckpt=non-reentrant/stack=current/model=tiny");
  EXPECT_EQ(find(other, "embedding output", "reentrant"), nullptr) << dump(other);
}

// The outlier preset's SwiGLU product at an outlier token, derived from its construction
// (model.cc): the outlier channels read sqrt(hidden / 2) = 8 after RMSNorm, two of them times 16.4
// give gate = up = 262.4, silu(262.4) * 262.4 = 6.885e4 (the other, small weights move it by well
// under 1%). Above fp16's 65504: down_proj's input overflows in fp16.
TEST(Audit, ActivationOutliersBeyondFp16AreReportedOnlyWhereFp16Computes) {
  const std::string head = "cpu/nf4/param=bf16/compute=";
  const auto bad = audit(head + "fp16/optim=adamw-fp32/amp=none/adapter=peft" + kTail + "outlier");
  const AuditFinding* f = find(bad, "model.layers.1.mlp.down_proj input", "fp32 forward pass");
  ASSERT_NE(f, nullptr) << dump(bad);
  EXPECT_EQ(f->dtype, "fp16");
  EXPECT_NE(f->meets.find("Linear4bit's fp16 compute dtype"), std::string::npos) << f->meets;
  EXPECT_FALSE(f->problem.empty());
  double peak = 0.0;
  ASSERT_EQ(std::sscanf(f->meets.c_str(), "its largest |value| %lf", &peak), 1) << f->meets;
  EXPECT_GT(peak, 65504.0);
  EXPECT_NEAR(peak, 6.885e4, 0.01 * 6.885e4);
  // Only down_proj of the last layer sees it.
  int overflowing = 0;
  for (const AuditFinding& g : bad) overflowing += !g.problem.empty() && g.tensor.find(" input") != std::string::npos;
  EXPECT_EQ(overflowing, 1) << dump(bad);

  // fp16 autocast and an fp16 model are routes into fp16 too.
  const auto amp = audit("cpu/nf4/param=fp32/compute=fp32/optim=adamw-fp32/amp=fp16/adapter=peft" +
                         std::string(kTail) + "outlier");
  f = find(amp, "down_proj input", "fp16 autocast");
  ASSERT_NE(f, nullptr) << dump(amp);
  EXPECT_FALSE(f->problem.empty());
  const auto fp16_model = audit("cpu/none/param=fp16/compute=fp16/optim=adamw-fp32/amp=none/adapter=peft" +
                                std::string(kTail) + "outlier");
  f = find(fp16_model, "down_proj input", "the fp16 model");
  ASSERT_NE(f, nullptr) << dump(fp16_model);

  // bf16 compute: no fp16 anywhere, no range check.
  const auto bf16 = audit(head + "bf16/optim=adamw-fp32/amp=none/adapter=peft" + kTail + "outlier");
  EXPECT_EQ(find(bf16, "input", "fp32 forward pass"), nullptr) << dump(bf16);
  // The tiny model in fp16: checked, within range (its activations stay of order 1).
  const auto tiny = audit(head + "fp16/optim=adamw-fp32/amp=none/adapter=peft" + kTail + "tiny");
  f = find(tiny, "linear layers' inputs", "within fp16's 65504");
  ASSERT_NE(f, nullptr) << dump(tiny);
  EXPECT_TRUE(f->problem.empty());
}

}  // namespace
}  // namespace qlc::harness
