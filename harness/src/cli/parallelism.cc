// How many cases run at once and with how many LibTorch threads each: by default the machine's
// usable cores, all of them, and no more (jobs x threads = usable cores).
#include <sched.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>

#include "commands.h"

namespace qlc::harness::cli {
namespace {

// The cgroup's CPU quota in cores (v2 cpu.max "QUOTA PERIOD", v1 cpu.cfs_quota_us and
// cpu.cfs_period_us), rounded up; 0 when there is none ("max", -1) or it cannot be read.
int cgroup_cpu_quota() {
  std::ifstream cgroups("/proc/self/cgroup");
  for (std::string line; std::getline(cgroups, line);) {
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    double quota = 0, period = 0;
    if (controllers.empty()) {
      std::ifstream in("/sys/fs/cgroup" + path + "/cpu.max");
      std::string q;
      if (!(in >> q >> period) || q == "max") continue;
      quota = std::atof(q.c_str());
    } else if (("," + controllers + ",").find(",cpu,") != std::string::npos) {
      const std::string dir = "/sys/fs/cgroup/" + controllers + path;
      std::ifstream q(dir + "/cpu.cfs_quota_us"), p(dir + "/cpu.cfs_period_us");
      if (!(q >> quota) || !(p >> period)) continue;
    } else {
      continue;
    }
    if (quota > 0 && period > 0) return std::max(1, static_cast<int>(std::ceil(quota / period)));
  }
  return 0;
}

}  // namespace

int usable_cores() {
  int cores = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) cores = CPU_COUNT(&set);
  if (cores <= 0) cores = 1;
  const int quota = cgroup_cpu_quota();
  return quota > 0 ? std::min(cores, quota) : cores;
}

Parallelism choose_parallelism(int jobs, int threads, bool in_process) {
  Parallelism p;
  p.cores = usable_cores();
  // Small cases gain more from running side by side than from threads inside one case, so the
  // cores go to jobs first.
  p.jobs = in_process ? 1 : jobs > 0 ? jobs : std::max(1, p.cores / std::max(1, threads));
  p.threads = threads > 0 ? threads : std::max(1, p.cores / p.jobs);
  return p;
}

}  // namespace qlc::harness::cli
