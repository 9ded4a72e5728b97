#!/usr/bin/env python3
"""Ratio table for the kernel benchmarks (CI glue, standard library only).

Reads Google Benchmark JSON files (or stdin with "-"), pairs every kernel with the memcpy
baseline that moved the same number of bytes (the "bytes" counter both carry), and prints
kernel GB/s, memcpy GB/s, their ratio, the target where one is set, and pass/fail. With
repetitions, each benchmark's best repetition is used (least disturbed by other load on a shared
machine). Exit status 1 when a kernel misses its target or has no baseline to compare with.

--needed-baselines prints instead a --benchmark_filter regex selecting the baselines that the
kernels in the input lack (register_memcpy_baseline_for names them memcpy/<bytes>B), or nothing.
"""
import argparse
import json
import re
import sys

# (name pattern, minimum ratio to memcpy): the project's performance targets.
# The first pattern that matches a name gives its target.
TARGETS = [
    (re.compile(r"^dequantize_4bit/nf4/bf16/"), 0.75),
    (re.compile(r"^quantize_4bit/(nf4|fp4)/(bf16|fp16)/64M$"), 0.50),
    (re.compile(r"^quantize_4bit/"), 0.30),
    (re.compile(r"^adamw_8bit/.*/64M$"), 0.50),
]


def target_for(name):
    for pattern, target in TARGETS:
        if pattern.search(name):
            return target
    return None


def best_runs(benchmarks):
    """Best bytes/s per benchmark name over its iteration runs (aggregates are skipped)."""
    best = {}
    for b in benchmarks:
        if b.get("run_type", "iteration") != "iteration" or "bytes_per_second" not in b:
            continue
        name = re.sub(r"/real_time$", "", b.get("run_name", b["name"]))
        if name not in best or b["bytes_per_second"] > best[name]["bytes_per_second"]:
            best[name] = b
    return best


def load(path):
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        sys.exit(f"bench_ratios: {path}: not Google Benchmark JSON ({e})")


def print_table(rows, context):
    print(f"# {context.get('host_name', '?')}: {context.get('num_cpus', '?')} CPUs, "
          f"qlc_cpu_isa={context.get('qlc_cpu_isa', '?')}, "
          f"threads={context.get('qlc_threads', '?')}, "
          f"load average {context.get('load_avg', '?')}")
    header = ("kernel", "GB/s", "memcpy GB/s", "ratio", "target", "result")
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths)] + rows:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", help="Google Benchmark JSON output, or - for stdin")
    parser.add_argument("--needed-baselines", action="store_true",
                        help="print a filter for the missing memcpy baselines and exit")
    args = parser.parse_args()
    files = [load(path) for path in args.json]
    runs = best_runs([b for f in files for b in f.get("benchmarks", [])])
    memcpy = {r["bytes"]: r["bytes_per_second"] for n, r in runs.items()
              if n.startswith("memcpy/") and "bytes" in r}
    kernels = {n: r for n, r in runs.items() if not n.startswith("memcpy/")}

    if args.needed_baselines:
        missing = sorted({int(r["bytes"]) for r in kernels.values()
                          if "bytes" in r and r["bytes"] not in memcpy})
        if missing:
            print("^memcpy/(" + "|".join(f"{b}B" for b in missing) + ")(/|$)")
        return 0

    rows, failed = [], 0
    for name, r in kernels.items():
        gbs = r["bytes_per_second"] / 1e9
        base = memcpy.get(r.get("bytes"))
        target = target_for(name)
        if base is None:
            rows.append((name, f"{gbs:.2f}", "-", "-", "-", "FAIL (no memcpy baseline)"))
            failed += 1
            continue
        ratio = r["bytes_per_second"] / base
        verdict = "-" if target is None else ("pass" if ratio >= target else "FAIL")
        failed += verdict == "FAIL"
        rows.append((name, f"{gbs:.2f}", f"{base / 1e9:.2f}", f"{ratio:.2f}",
                     "-" if target is None else f">= {target:.2f}", verdict))
    if not rows:
        print("bench_ratios: no kernel benchmarks in the input", file=sys.stderr)
        return 1
    print_table(rows, files[0].get("context", {}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
