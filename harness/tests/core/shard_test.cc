// Shards (`--shard I/N`): disjoint, covering, in list order, balanced by expected cost, stable when
// the matrix grows at the end.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "qlc/harness/matrix.h"
#include "qlc/harness/shard.h"

namespace qlc::harness {
namespace {

std::string source_path(const std::string& relative) {
  return std::string(QLC_SOURCE_DIR) + "/" + relative;
}

std::vector<Case> parse(const std::string& yaml) { return parse_matrix(yaml, "t.yaml").cases; }

// A matrix whose costs differ along all three cost axes: 4 formats x 3 AMP modes x 3 presets x
// 2 dtypes = 72 cases, the `small` ones 33 times a tiny one.
const char* kMixedCosts =
    "matrix:\n"
    "  model: [tiny, outlier, small]\n"
    "  amp: [none, fp16, bf16]\n"
    "  weights: [none, nf4, fp4, int8]\n"
    "  param_dtype: [fp32, bf16]\n";

std::int64_t cost_of(const std::vector<Case>& cases) {
  std::int64_t sum = 0;
  for (const Case& c : cases) sum += expected_cost(c);
  return sum;
}

// Every case in exactly one shard, each shard in list order, and the costliest shard within 20%
// of the mean shard (the bound).
void expect_partition(const std::vector<Case>& cases, int n) {
  std::map<std::string, int> seen;
  std::map<std::string, std::size_t> position;
  for (std::size_t i = 0; i < cases.size(); ++i) position[cases[i].id()] = i;
  std::int64_t costliest = 0;
  for (int i = 1; i <= n; ++i) {
    const std::vector<Case> shard = shard_cases(cases, i, n);
    for (std::size_t k = 0; k < shard.size(); ++k) {
      ++seen[shard[k].id()];
      if (k > 0) EXPECT_LT(position[shard[k - 1].id()], position[shard[k].id()]) << n;
    }
    costliest = std::max(costliest, cost_of(shard));
  }
  EXPECT_EQ(seen.size(), cases.size()) << n << " shards lose cases";
  for (const auto& [id, count] : seen) EXPECT_EQ(count, 1) << id << " in " << n << " shards";
  const double mean = static_cast<double>(cost_of(cases)) / n;
  EXPECT_LE(static_cast<double>(costliest), 1.2 * mean) << n << " shards";
}

TEST(Shard, ShippedMatrixPartitionsAndBalances) {
  const std::vector<Case> cases = load_matrix(source_path("cases/default.yaml")).cases;
  // The 216-case core plus the file's 22 designed `include` cases (counted in cases/default.yaml).
  ASSERT_EQ(cases.size(), 238u);
  for (int n : {1, 2, 3, 4, 5, 7, 8, 16}) expect_partition(cases, n);
}

TEST(Shard, MixedCostsPartitionAndBalance) {
  const std::vector<Case> cases = parse(kMixedCosts);
  ASSERT_EQ(cases.size(), 72u);
  for (int n : {1, 2, 3, 4, 6, 8}) expect_partition(cases, n);
}

TEST(Shard, AppendingCasesMovesNoEarlierCase) {
  // The mixed matrix is the shipped one grown at the end by cases of every cost.
  std::vector<Case> grown = load_matrix(source_path("cases/default.yaml")).cases;
  const std::vector<Case> before = grown;
  for (const Case& c : parse(kMixedCosts)) grown.push_back(c);
  for (int n : {2, 3, 5, 8}) {
    const std::vector<int> old_shards = shard_assignment(before, n);
    const std::vector<int> new_shards = shard_assignment(grown, n);
    ASSERT_EQ(new_shards.size(), grown.size());
    EXPECT_TRUE(std::equal(old_shards.begin(), old_shards.end(), new_shards.begin())) << n;
  }
}

TEST(Shard, EqualCostsGoRoundRobinAndTheLightestShardTakesTheNextCase) {
  // Equal costs: every tie goes to the lowest index, so shard i holds cases i-1, i-1+n, ...
  const std::vector<Case> same = parse("matrix:\n  optimizer: [adamw-fp32, adamw-param, adamw8bit]\n"
                                       "  param_dtype: [fp32, fp16]\n");
  ASSERT_EQ(same.size(), 6u);
  EXPECT_EQ(shard_assignment(same, 4), (std::vector<int>{1, 2, 3, 4, 1, 2}));
  // One `small` case first: its shard takes nothing more until the others catch up with it.
  const std::vector<Case> heavy_first =
      parse("matrix:\n  include:\n    - {model: small}\n    - {model: tiny}\n"
            "    - {model: tiny, weights: none}\n    - {model: tiny, weights: int8}\n");
  ASSERT_EQ(heavy_first.size(), 4u);
  EXPECT_EQ(shard_assignment(heavy_first, 2), (std::vector<int>{1, 2, 2, 2}));
  // More shards than cases: the last shards are empty.
  EXPECT_TRUE(shard_cases(same, 8, 8).empty());
}

TEST(Shard, ExpectedCostFollowsTheCostAxes) {
  Case c;  // tiny, nf4, no AMP
  const std::int64_t tiny = expected_cost(c);
  Case dense = c;
  dense.weights = WeightFormat::kNone;
  EXPECT_EQ(expected_cost(dense), 100);  // the unit
  EXPECT_GT(tiny, expected_cost(dense));  // dequantizing in forward and backward costs time
  Case amp = c;
  amp.amp = Amp::kFp16;
  EXPECT_GT(expected_cost(amp), tiny);
  // Presets: the linear layers' multiply-adds per step (training/model.cc) order them.
  Case outlier = c, small = c, layer = c;
  outlier.model = ModelPreset::kOutlier;
  small.model = ModelPreset::kSmall;
  layer.model = ModelPreset::k7bLayer;
  EXPECT_EQ(expected_cost(outlier), tiny);  // the same shapes
  EXPECT_GT(expected_cost(small), 20 * tiny);
  EXPECT_GT(expected_cost(layer), 10 * expected_cost(small));
  // The axes that do not change the work per step do not change the cost.
  Case other = c;
  other.param_dtype = Dtype::kBf16;
  other.optimizer = OptimizerKind::kAdamW8bit;
  other.device = "cuda:1";
  EXPECT_EQ(expected_cost(other), tiny);
}

TEST(Shard, BadArguments) {
  const std::vector<Case> cases = parse("matrix:\n  weights: [nf4, int8]\n");
  EXPECT_THROW(shard_cases(cases, 0, 4), std::invalid_argument);
  EXPECT_THROW(shard_cases(cases, 5, 4), std::invalid_argument);
  EXPECT_THROW(shard_cases(cases, 1, 0), std::invalid_argument);
  EXPECT_THROW(shard_assignment(cases, 0), std::invalid_argument);
}

}  // namespace
}  // namespace qlc::harness
