// Spreading one run's cases over machines: `qlora-compat run --shard I/N` (and `list`).
//
// Shards are balanced by each case's expected cost, not by count: a 7b-layer case costs as much
// as hundreds of tiny ones. The assignment walks the case list in order and gives each case to the
// shard whose expected cost so far is smallest (the lowest index on a tie). So it is
//  - deterministic: the same list gives the same shards on every machine (integer costs, no
//    clock, no hash);
//  - disjoint and covering: every case lands in exactly one shard;
//  - stable when the matrix grows at the end: a case's shard depends only on the cases before
//    it, so appending cases moves none of the earlier ones;
//  - balanced: the costliest shard exceeds the mean by at most the costliest single case.
#pragma once

#include <cstdint>
#include <vector>

#include "qlc/harness/case.h"

namespace qlc::harness {

// A case's expected run time in arbitrary integer units (a tiny, unquantized fp32 case without
// AMP is 100), from the axes that dominate it: model preset, weight format and AMP. The figures
// and where they come from are in shard.cc.
std::int64_t expected_cost(const Case& c);

// Shard `index` of `count` (1-based): the cases the walk above gives that shard, in list order.
// Throws std::invalid_argument unless 1 <= index <= count.
std::vector<Case> shard_cases(const std::vector<Case>& cases, int index, int count);

// Which shard (1-based) each case of `cases` goes to, in list order.
std::vector<int> shard_assignment(const std::vector<Case>& cases, int count);

}  // namespace qlc::harness
