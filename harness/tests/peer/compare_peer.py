#!/usr/bin/env python3
"""The `peer` cross-check: a fixed sample of cases (cases/peer.yaml) trained by qlora-compat and by
transformers + PEFT + bitsandbytes from PyPI (step_peer.py), compared case by case:
  - the same outcome class (ok, nan_loss, no_learning, unsupported_dtype, ...);
  - the same first loss within the tolerance derived below, when both are finite.
A disagreement fails unless harness/tests/peer/accepted_disagreements.txt lists the case id with
its reason; a listed case that agrees fails too, so that the list stays true. The sample must hold
every value of every axis at least once on the `current` stack (values left out on purpose are
named with --not-covered, each with its reason in CMake next to the test).

Tolerance of the first loss. The first loss is computed before any update, from the same
checkpoint bytes, batch and LoRA start on both sides, with lora_B = 0: it is the base model's loss,
and both sides run the same ATen CPU kernels (the test exists only where qlora-compat's LibTorch is
the venv's torch). It can differ only where one side orders or fuses an operation differently;
each such operation changes a value by at most one rounding, relative u = 2^-24 (fp32), 2^-11
(fp16), 2^-8 (bf16) in the lowest-precision dtype the case computes in. Such a rounding in the
residual stream (2 per decoder layer, plus the final norm and LM head: 2L + 1 places) reaches the
logits at most once each, and cross-entropy moves by at most 2 max|dz| for a logit change dz (its
gradient softmax - onehot has l1 norm <= 2). With logits no larger than max(1, loss) (true of the
presets' near-uniform first predictions: loss ~ log(vocab)), the bound is
  |loss_ours - loss_peer| <= 2 * u * (2L + 1) * max(1, loss).
Observed with LibTorch 2.13 at the time of writing: 0 for every case of the sample.

Older stacks (--stack STACK=DIR, cases/peer-older.yaml): the cases of each `stack` value run in
the peer with that release installed in DIR ahead of the venv's (PYTHONPATH; ci/setup_venv.sh
installs them under .venv/stacks/), so the peer is the old release itself, not our reading of it.
The coverage check is then about the stacks: every case's stack must have a DIR.

Usage: compare_peer.py --cli QLORA_COMPAT --matrix cases/peer.yaml --accepted FILE --work DIR
                       [--not-covered model=7b-layer ...] [--stack bnb-0.49=DIR ...]
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
UNIT_ROUNDOFF = {"fp32": 2.0 ** -24, "fp16": 2.0 ** -11, "bf16": 2.0 ** -8}
# The axes and values of case.h (kAll* arrays, to_string); the sample must cover each on `current`.
AXES = {
    "weights": ["none", "nf4", "fp4", "int8"],
    "double_quant": ["false", "true"],
    "param_dtype": ["fp32", "fp16", "bf16"],
    "compute_dtype": ["fp32", "fp16", "bf16"],
    "optimizer": ["adamw-fp32", "adamw-param", "adamw8bit", "paged-adamw8bit"],
    "amp": ["none", "fp16", "bf16"],
    "adapter_dtype": ["peft", "base", "model"],
    "prepare_kbit": ["off", "on"],
    "grad_checkpointing": ["off", "reentrant", "non-reentrant"],
    "stack": ["current"],
    "model": ["tiny", "outlier", "small", "7b-layer"],
}


def read_records(path):
    with open(path) as f:
        return {r["case"]: r for r in (json.loads(line) for line in f if line.strip())}


def read_accepted(path):
    """`<case id> <reason>` per line; # comments and blank lines ignored."""
    accepted = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            case_id, _, reason = line.partition(" ")
            if not reason.strip():
                sys.exit(f"{path}:{n}: expected '<case id> <reason>', got '{line}'")
            accepted[case_id] = reason.strip()
    return accepted


def lowest_precision(axes):
    """The lowest-precision dtype the case computes in (bf16 < fp16 < fp32 in mantissa bits)."""
    dtypes = {axes["param_dtype"]}
    if axes["weights"] in ("nf4", "fp4"):
        dtypes.add(axes["compute_dtype"])
    if axes["amp"] != "none":
        dtypes.add(axes["amp"])
    return max(dtypes, key=lambda d: UNIT_ROUNDOFF[d])


def first_loss(record):
    losses = record.get("losses") or []
    return losses[0] if losses and isinstance(losses[0], float) and math.isfinite(losses[0]) else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cli", required=True)
    ap.add_argument("--matrix", required=True)
    ap.add_argument("--accepted", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--not-covered", action="append", default=[],
                    help="axis=value the sample leaves out on purpose")
    ap.add_argument("--stack", action="append", default=[], metavar="STACK=DIR",
                    help="run the cases of STACK in the peer with the releases installed in DIR")
    args = ap.parse_args()
    overlays = dict(s.split("=", 1) for s in args.stack)
    shutil.rmtree(args.work, ignore_errors=True)
    ours = os.path.join(args.work, "ours")
    subprocess.run([args.cli, "run", "--matrix", args.matrix, "--device", "cpu", "--out", ours,
                    "--rules", "none"], check=True)
    mine = read_records(os.path.join(ours, "records.jsonl"))
    failures = []

    # The peer: once with the venv's releases, or once per older stack with its releases first.
    theirs, folders = {}, {}
    for stack, overlay in (overlays.items() if overlays else [("current", None)]):
        peer, exported = (os.path.join(args.work, d, stack) for d in ("peer", "cases"))
        env = dict(os.environ)
        if overlay:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (overlay, env.get("PYTHONPATH")) if p)
        subprocess.run([args.python, os.path.join(HERE, "step_peer.py"), "--cli", args.cli,
                        "--matrix", args.matrix, "--out", peer, "--work", exported]
                       + (["--filter", f"stack={stack}"] if overlay else []), check=True, env=env)
        records = read_records(os.path.join(peer, "records.jsonl"))
        theirs.update(records)
        for n, case_id in enumerate(records, 1):  # step_peer exports case i to case{i}
            folders[case_id] = os.path.join(exported, f"case{n}")
    accepted = read_accepted(args.accepted)

    def case_axes(case_id):
        with open(os.path.join(folders[case_id], "case.json")) as f:
            return json.load(f)["axes"]

    if overlays:  # every case's stack has its releases
        for case_id in mine:
            if case_id not in theirs:
                failures.append(f"{case_id}: its stack has no --stack releases")
    else:  # coverage: every value of every axis on the current stack
        seen = {axis: set() for axis in AXES}
        for case_id in theirs:
            axes = case_axes(case_id)
            for axis in AXES:
                seen[axis].add(str(axes[axis]).lower())
        for axis, values in AXES.items():
            for v in values:
                if v not in seen[axis] and f"{axis}={v}" not in args.not_covered:
                    failures.append(f"the sample has no case with {axis}={v}")

    for case_id, p in theirs.items():
        o = mine.get(case_id)
        if o is None:
            failures.append(f"{case_id}: no record of qlora-compat")
            continue
        axes = case_axes(case_id)
        with open(os.path.join(folders[case_id], "config.json")) as f:
            layers = json.load(f)["num_hidden_layers"]
        problems = []
        if o["outcome"] != p["outcome"]:
            problems.append(f"outcome {o['outcome']} here, {p['outcome']} in the peer "
                            f"(here: {o['message']!r}; peer: {p['message']!r})")
        lo, lp = first_loss(o), first_loss(p)
        dtype = lowest_precision(axes)
        tol = 2.0 * UNIT_ROUNDOFF[dtype] * (2 * layers + 1) * max(1.0, abs(lp or 1.0))
        if lo is not None and lp is not None and abs(lo - lp) > tol:
            problems.append(f"first loss {lo!r} here, {lp!r} in the peer (|diff| "
                            f"{abs(lo - lp):.3g} > {tol:.3g}, {dtype})")
        elif (lo is None) != (lp is None):
            problems.append(f"first loss {lo!r} here, {lp!r} in the peer")
        diff = "" if lo is None or lp is None else f"{abs(lo - lp):.3g}"
        if problems and case_id in accepted:
            print(f"accepted  {case_id}: {'; '.join(problems)} -- {accepted[case_id]}")
        elif problems:
            failures.append(f"{case_id}: {'; '.join(problems)}")
        elif case_id in accepted:
            failures.append(f"{case_id}: listed in {args.accepted} but agrees now (remove it)")
        else:
            print(f"agree     {case_id}: {o['outcome']}, first loss diff {diff or '-'} "
                  f"(tolerance {tol:.3g})")
    for case_id in accepted:
        if case_id not in theirs:
            failures.append(f"{case_id}: listed in {args.accepted} but not a case of {args.matrix}")
    for f in failures:
        print(f"FAIL      {f}")
    print(f"{len(theirs)} cases, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
