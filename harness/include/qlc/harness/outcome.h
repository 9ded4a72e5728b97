// What happened to a case, and in which phase. Enums with to_string / from_string so records,
// reports and rules share one spelling.
#pragma once

#include <array>
#include <string>

namespace qlc::harness {

enum class Outcome {
  kOk,                // every step finite and the loss went down
  kDtypeMismatch,     // e.g. "expected mat1 and mat2 to have the same dtype"
  kUnsupportedDtype,  // e.g. "\"addmm_impl_cpu_\" not implemented for 'Half'"
  kUnsupportedOp,     // an operation the device/build does not provide at all
  kNanLoss,           // a loss or gradient went NaN/Inf
  kNoLearning,        // finite, but the loss did not go down (updates vanished)
  kOom,               // out of memory (device or host)
  kCudaError,         // a CUDA runtime/driver error
  kCrash,             // the worker died from a signal
  kTimeout,           // the worker exceeded its time limit and was killed
  kSkipped,           // not run, with a reason (e.g. CUDA case on a machine without a GPU)
  kHarnessError,      // our own bug: always a test failure
  kMachineFault,      // the machine stopped the case (disk full, unwritable folder, killed or
                      // stopped from outside): says nothing about the settings; --resume re-runs it
};

enum class Phase { kNone, kSetup, kLoad, kForward, kBackward, kOptimizer };

std::string to_string(Outcome v);  // ok dtype_mismatch ... harness_error machine_fault
std::string to_string(Phase v);    // none setup load forward backward optimizer
// Throw std::invalid_argument naming the bad value and the valid ones.
Outcome outcome_from_string(const std::string& s);
Phase phase_from_string(const std::string& s);

// Every enumerator, in declaration order.
inline constexpr std::array<Outcome, 13> kAllOutcomes = {
    Outcome::kOk, Outcome::kDtypeMismatch, Outcome::kUnsupportedDtype, Outcome::kUnsupportedOp,
    Outcome::kNanLoss, Outcome::kNoLearning, Outcome::kOom, Outcome::kCudaError,
    Outcome::kCrash, Outcome::kTimeout, Outcome::kSkipped, Outcome::kHarnessError,
    Outcome::kMachineFault,
};
inline constexpr std::array<Phase, 6> kAllPhases = {
    Phase::kNone, Phase::kSetup, Phase::kLoad, Phase::kForward, Phase::kBackward, Phase::kOptimizer,
};

}  // namespace qlc::harness
