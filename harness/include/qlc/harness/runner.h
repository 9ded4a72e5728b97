// Runs one case in this process: deterministic base weights -> a real .safetensors checkpoint ->
// quantized loading -> LoRA adapters -> N real training steps -> a classified, timed Record.
// Failures of the case (LibTorch/CUDA errors, NaN, no learning) become the record's outcome;
// only our own bugs become kHarnessError.
#pragma once

#include <string>

#include "qlc/harness/case.h"
#include "qlc/harness/record.h"

namespace qlc::harness {

// Fault injection, for tests of the isolation only (never set by a normal run).
enum class Fault { kNone, kSegfault, kAbort, kHang, kThrowHarnessBug };
Fault fault_from_string(const std::string& s);  // none segfault abort hang harness-bug

struct RunContext {
  std::string work_dir;  // where the case writes its checkpoint (created if missing)
  Fault fault = Fault::kNone;
  // LibTorch's intra-op threads for the case (at::set_num_threads); 0 keeps LibTorch's default.
  // One by default: losses then do not depend on the machine's core count, and cases or tests
  // running side by side do not stall on each other's OpenMP barriers (tiny nf4 case on a loaded
  // 2-core machine: 2.8 s with one thread, 18 s with two).
  int cpu_threads = 1;
};

Record run_case(const Case& c, const RunSettings& settings, const RunContext& ctx);

}  // namespace qlc::harness
