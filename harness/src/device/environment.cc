// Environment capture: the facts a verdict depends on. Only stable facts go in (no times, no free
// memory, no host name), so that the id is the same for every run of one build on one machine.
#include "qlc/harness/environment.h"

#include <gnu/libc-version.h>
#include <sched.h>
#include <sys/utsname.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/Context.h>
#include <ATen/Version.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include "device/cuda_driver_probe.h"

#ifndef QLC_GIT_REVISION
#define QLC_GIT_REVISION "unknown"
#endif

namespace qlc::harness {
namespace {

// Whether this LibTorch is a CUDA build. at::hasCUDA() answers "is a CUDA device usable", which is
// false on a CUDA build without a driver; the CUDA hooks of a CUDA build report its runtime.
bool built_with_cuda() { return at::detail::getCUDAHooks().hasCUDART(); }


std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

// "key<sep>value" lines of a text file (/proc/cpuinfo, /etc/os-release); first occurrence wins.
std::string file_value(const std::string& path, const std::string& key, char sep) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    size_t pos = line.find(sep);
    if (pos == std::string::npos) continue;
    if (trim(line.substr(0, pos)) != key) continue;
    std::string value = trim(line.substr(pos + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    return value;
  }
  return "";
}

std::string driver_version_string(int v) {
  if (v <= 0) return "unknown";
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

nlohmann::json cpu_facts() {
  nlohmann::json cpu;
  std::string model = file_value("/proc/cpuinfo", "model name", ':');
  if (model.empty()) {
    // aarch64 has no model name: the implementer and part codes identify the core.
    std::string impl = file_value("/proc/cpuinfo", "CPU implementer", ':');
    std::string part = file_value("/proc/cpuinfo", "CPU part", ':');
    if (!impl.empty()) model = "implementer " + impl + " part " + part;
  }
  cpu["model"] = model.empty() ? "unknown" : model;
  cpu_set_t set;
  CPU_ZERO(&set);
  cpu["usable_cores"] = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
  // The ISA extensions the kernels and LibTorch dispatch on (x86 "flags", aarch64 "Features").
  static const std::set<std::string> kRelevant = {
      "sse4_2",   "avx",         "avx2",        "fma",        "f16c",     "avx512f",
      "avx512bw", "avx512vl",    "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni",
      "amx_tile", "amx_bf16",    "asimd",       "asimdhp",    "sve",      "sve2",
      "bf16",     "i8mm"};
  std::string flags = file_value("/proc/cpuinfo", "flags", ':');
  if (flags.empty()) flags = file_value("/proc/cpuinfo", "Features", ':');
  std::set<std::string> found;
  std::istringstream ss(flags);
  for (std::string f; ss >> f;) {
    if (kRelevant.count(f)) found.insert(f);
  }
  cpu["isa"] = std::vector<std::string>(found.begin(), found.end());
  std::string mem = file_value("/proc/meminfo", "MemTotal", ':');  // "24576000 kB"
  cpu["memory_bytes"] = mem.empty() ? int64_t{0} : std::stoll(mem) * 1024;
  return cpu;
}

nlohmann::json os_facts() {
  nlohmann::json os;
  std::string name = file_value("/etc/os-release", "PRETTY_NAME", '=');
  os["name"] = name.empty() ? "unknown" : name;
  utsname u{};
  if (uname(&u) == 0) {
    os["kernel"] = std::string(u.sysname) + " " + u.release;
    os["machine"] = u.machine;
  }
  os["glibc"] = gnu_get_libc_version();
  return os;
}

nlohmann::json compiler_facts() {
#if defined(__clang__)
  std::string name = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  std::string name = std::string("gcc ") + __VERSION__;
#else
  std::string name = "unknown";
#endif
  return {{"name", trim(name)}, {"cplusplus", static_cast<long>(__cplusplus)}};
}

// LibTorch's own description of its build (compiler, BLAS, CPU capability, CUDA/cuDNN).
std::vector<std::string> libtorch_config_lines() {
  std::vector<std::string> lines;
  std::istringstream ss(at::show_config());
  for (std::string line; std::getline(ss, line);) {
    line = trim(line);
    if (line.rfind("- ", 0) == 0) line = line.substr(2);
    if (!line.empty() && line != "PyTorch built with:") lines.push_back(line);
  }
  return lines;
}

// The value after `prefix` in the first config line starting with it ("CUDA Runtime 12.8").
std::string config_value(const std::vector<std::string>& lines, const std::string& prefix) {
  for (const auto& l : lines) {
    if (l.rfind(prefix, 0) == 0) return trim(l.substr(prefix.size()));
  }
  return "";
}

nlohmann::json libtorch_facts(const std::vector<std::string>& config) {
  nlohmann::json t;
  t["version"] = TORCH_VERSION;
  t["cuda_build"] = built_with_cuda();
  std::string capability = config_value(config, "CPU capability usage:");
  t["cpu_capability"] = capability.empty() ? "unknown" : capability;
#ifdef _GLIBCXX_USE_CXX11_ABI
  t["cxx11_abi"] = _GLIBCXX_USE_CXX11_ABI == 1;
#endif
  // "Build settings: KEY=VALUE, KEY=VALUE, ..." becomes an object (rules can test USE_CUDA,
  // BLAS_INFO, ...); the other lines stay as they are.
  nlohmann::json other = nlohmann::json::array();
  nlohmann::json settings = nlohmann::json::object();
  const std::string prefix = "Build settings:";
  for (const auto& line : config) {
    if (line.rfind(prefix, 0) != 0) {
      other.push_back(line);
      continue;
    }
    std::string rest = line.substr(prefix.size());
    size_t pos = 0;
    while (pos < rest.size()) {
      size_t end = rest.find(", ", pos);
      if (end == std::string::npos) end = rest.size();
      std::string item = trim(rest.substr(pos, end - pos));
      if (!item.empty() && item.back() == ',') item.pop_back();
      size_t eq = item.find('=');
      if (eq != std::string::npos) settings[trim(item.substr(0, eq))] = trim(item.substr(eq + 1));
      pos = end + 2;
    }
  }
  t["build_config"] = other;
  t["build_settings"] = settings;
  return t;
}

nlohmann::json device_json(const CudaDriverDevice& d) {
  return {{"index", d.index},
          {"name", d.name},
          {"compute_capability",
           std::to_string(d.capability_major) + "." + std::to_string(d.capability_minor)},
          {"total_memory_bytes", d.total_memory_bytes}};
}

nlohmann::json cuda_facts(const std::vector<std::string>& config) {
  nlohmann::json cuda;
  const bool torch_cuda = built_with_cuda();
  const bool available = torch_cuda && torch::cuda::is_available();
  const CudaDriverProbe probe = probe_cuda_driver();
  cuda["available"] = available;
  if (!probe.usable) cuda["driver_error"] = probe.error;
  if (probe.usable) {
    cuda["driver_version"] = driver_version_string(probe.driver_version);
    nlohmann::json devices = nlohmann::json::array();
    for (const auto& d : probe.devices) devices.push_back(device_json(d));
    cuda["devices"] = devices;
  }
  if (torch_cuda) {
    std::string runtime = config_value(config, "CUDA Runtime");
    cuda["runtime_version"] = runtime.empty() ? "unknown" : runtime;
    std::string cudnn = config_value(config, "CuDNN");
    if (!cudnn.empty()) cuda["cudnn_version"] = cudnn;
  }
  if (available) {
    cuda["device_count"] = static_cast<int>(torch::cuda::device_count());
    return cuda;
  }
  std::string reason;
  if (!torch_cuda) {
    reason = std::string("LibTorch ") + TORCH_VERSION + " is a build without CUDA";
    if (probe.usable && !probe.devices.empty()) {
      reason += " (the driver sees " + std::to_string(probe.devices.size()) + " GPU(s): " +
                probe.devices[0].name + ")";
    }
  } else if (!probe.usable) {
    reason = probe.error;
  } else if (probe.devices.empty()) {
    reason = "the NVIDIA driver sees no GPU";
  } else {
    reason = "LibTorch cannot use the GPU (driver " +
             driver_version_string(probe.driver_version) + ", LibTorch built for CUDA " +
             config_value(config, "CUDA Runtime") + ")";
  }
  cuda["reason"] = reason;
  return cuda;
}

}  // namespace

std::string Environment::id() const {
  // FNV-1a over the canonical dump (nlohmann::json keeps object keys sorted).
  const std::string text = facts.dump();
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : text) h = (h ^ ch) * 1099511628211ull;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return std::string(hex, 12);
}

Environment capture_environment() {
  const std::vector<std::string> config = libtorch_config_lines();
  Environment env;
  env.facts["qlora_compat"] = {{"git_revision", QLC_GIT_REVISION}};
  env.facts["compiler"] = compiler_facts();
  env.facts["os"] = os_facts();
  env.facts["cpu"] = cpu_facts();
  env.facts["libtorch"] = libtorch_facts(config);
  env.facts["cuda"] = cuda_facts(config);
  return env;
}

std::string resolve_auto_device() {
  return at::hasCUDA() && torch::cuda::is_available() ? "cuda:0" : "cpu";
}

DeviceFacts device_facts(const std::string& device) {
  DeviceFacts facts;
  facts.libtorch_version = TORCH_VERSION;
  if (device.rfind("cuda", 0) != 0) return facts;
  facts.device_type = "cuda";
  const size_t colon = device.find(':');
  const int index = colon == std::string::npos ? 0 : std::stoi(device.substr(colon + 1));
  const CudaDriverProbe probe = probe_cuda_driver();
  for (const auto& d : probe.devices) {
    if (d.index == index) facts.compute_capability = d.capability_major + 0.1 * d.capability_minor;
  }
  return facts;
}

std::string describe_environment(const Environment& env) {
  const auto& f = env.facts;
  std::string text = f["cpu"].value("model", "unknown CPU") + ", LibTorch " +
                     f["libtorch"].value("version", "?");
  const auto& cuda = f["cuda"];
  if (cuda.value("available", false) && cuda.contains("devices") && !cuda["devices"].empty()) {
    text += ", " + cuda["devices"][0].value("name", "GPU") + " (sm " +
            cuda["devices"][0].value("compute_capability", "?") + ")";
  } else {
    text += ", no usable GPU";
  }
  return text;
}

}  // namespace qlc::harness
