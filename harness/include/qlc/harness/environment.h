// The facts about this machine a verdict depends on, captured once per run.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "qlc/harness/rules.h"

namespace qlc::harness {

struct Environment {
  nlohmann::json facts;  // device name, compute capability, driver/runtime versions, LibTorch
                         // version and build flags, CPU model and ISA, OS, compiler, git revision
  std::string id() const;  // short stable hash of `facts`, stored in every record
};

Environment capture_environment();

// "cuda:0" when LibTorch sees a usable GPU, else "cpu" (what device `auto` means).
std::string resolve_auto_device();

// What rules may test about `device` ("cpu" or "cuda:N") with the LibTorch we link: its type,
// the LibTorch version and, for a GPU the driver sees, its compute capability.
DeviceFacts device_facts(const std::string& device);

// One line for people: "<CPU model>, LibTorch <version>, <GPU name (sm X.Y)> | no usable GPU".
std::string describe_environment(const Environment& env);

}  // namespace qlc::harness
