#!/usr/bin/env python3
"""Per-case overhead of a qlora-compat run (CI glue, standard library only).

Reads a run's records.jsonl and prints, over the cases that ran all their steps (outcome ok or
no_learning: a case that fails early has no training time to compare with), the share of each
case's wall time spent outside its training steps (worker start, model build, checkpoint write
and read, quantization): timings.overhead_ms / timings.wall_ms, as median, p90 and max, and the
run's total. Exit status 1 when the median share exceeds --target (default 0.15).

    ci/bench_case_overhead.py results/run-<time>/records.jsonl [--target 0.15]
"""
import argparse
import json
import math
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records")
    ap.add_argument("--target", type=float, default=0.15)
    args = ap.parse_args()
    shares, wall, overhead, total = [], 0.0, 0.0, 0
    with open(args.records) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{args.records}:{line_no}: not a JSON record: {e}")
            total += 1
            t = r["timings"]
            if r["outcome"] not in ("ok", "no_learning") or t["wall_ms"] <= 0:
                continue
            shares.append(t["overhead_ms"] / t["wall_ms"])
            wall += t["wall_ms"]
            overhead += t["overhead_ms"]
    if not shares:
        sys.exit(f"{args.records}: no case ran all its steps")
    shares.sort()
    n = len(shares)
    median = shares[n // 2] if n % 2 else 0.5 * (shares[n // 2 - 1] + shares[n // 2])
    p90 = shares[max(math.ceil(0.9 * n), 1) - 1]
    print(f"cases: {n} of {total} ran all their steps; case wall time {wall / 1000:.1f} s in all")
    print(f"overhead share (outside training steps / case wall time): median {median:.3f}, "
          f"p90 {p90:.3f}, max {shares[-1]:.3f}, all cases together {overhead / wall:.3f}")
    ok = median <= args.target
    print(f"target: median <= {args.target:.2f}: {'pass' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
