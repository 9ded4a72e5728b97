#include "qlc/harness/outcome.h"

#include <stdexcept>

#include "enum_names.h"

namespace qlc::harness {

std::string to_string(Outcome v) {
  switch (v) {
    case Outcome::kOk: return "ok";
    case Outcome::kDtypeMismatch: return "dtype_mismatch";
    case Outcome::kUnsupportedDtype: return "unsupported_dtype";
    case Outcome::kUnsupportedOp: return "unsupported_op";
    case Outcome::kNanLoss: return "nan_loss";
    case Outcome::kNoLearning: return "no_learning";
    case Outcome::kOom: return "oom";
    case Outcome::kCudaError: return "cuda_error";
    case Outcome::kCrash: return "crash";
    case Outcome::kTimeout: return "timeout";
    case Outcome::kSkipped: return "skipped";
    case Outcome::kHarnessError: return "harness_error";
    case Outcome::kMachineFault: return "machine_fault";
  }
  throw std::logic_error("Outcome out of range");
}

std::string to_string(Phase v) {
  switch (v) {
    case Phase::kNone: return "none";
    case Phase::kSetup: return "setup";
    case Phase::kLoad: return "load";
    case Phase::kForward: return "forward";
    case Phase::kBackward: return "backward";
    case Phase::kOptimizer: return "optimizer";
  }
  throw std::logic_error("Phase out of range");
}

Outcome outcome_from_string(const std::string& s) {
  return detail::parse_enum(kAllOutcomes, s, "outcome");
}

Phase phase_from_string(const std::string& s) { return detail::parse_enum(kAllPhases, s, "phase"); }

}  // namespace qlc::harness
