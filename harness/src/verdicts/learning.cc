// The no_learning criterion (see learning.h).
#include "verdicts/learning.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace qlc::harness {

LearningVerdict judge_learning(const std::vector<double>& losses) {
  const int n = static_cast<int>(losses.size());
  if (n < 2) throw std::invalid_argument("judging learning needs at least two steps");
  for (double l : losses) {
    if (!std::isfinite(l)) throw std::invalid_argument("judging learning needs finite losses");
  }
  LearningVerdict v;
  v.window = n >= 4 ? 2 : 1;
  for (int i = 0; i < v.window; ++i) {
    v.first += losses[static_cast<size_t>(i)] / v.window;
    v.last += losses[static_cast<size_t>(n - 1 - i)] / v.window;
  }
  v.required = kNoLearningRelativeMargin * std::fabs(v.first);
  v.learned = v.last < v.first - v.required;
  char buf[200];
  std::snprintf(buf, sizeof buf, "loss %.6g -> %.6g (mean of first/last %d of %d steps; %s %.3g)",
                v.first, v.last, v.window, n, v.learned ? "dropped by more than" : "needs a drop >",
                v.required);
  v.summary = buf;
  return v;
}

}  // namespace qlc::harness
