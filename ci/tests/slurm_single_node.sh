#!/usr/bin/env bash
# ci/slurm/ on a real single-node Slurm (Debian's slurm-wlm + munge), started here on loopback
# in a temporary folder: 3 array tasks on the CPU (one shard each) and the dependent merge job;
# together the shards' records must hold every case of the matrix once, with the outcomes of one
# unsharded run. Needs root (munged, slurmd). Gives up with status 77 (skip) when Slurm cannot
# be started within a minute, saying why. Not part of ci/test.sh (see the README).
#   ci/tests/slurm_single_node.sh [BUILD_DIR]     (a build with qlora-compat; default build/)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$(cd "${1:-$root/build}" && pwd)"
matrix=cases/smoke.yaml
for tool in munged slurmctld slurmd sbatch squeue; do
  command -v "$tool" >/dev/null 2>&1 || { echo "skipped: $tool not found (apt-get install slurm-wlm munge)"; exit 77; }
done
tmp="$(mktemp -d /tmp/qlc-slurm.XXXXXX)"
chmod 755 "$tmp"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 1
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp"/{munge,ctld,d,log,runs}
dd if=/dev/urandom of="$tmp/munge/key" bs=1024 count=1 status=none
chmod 400 "$tmp/munge/key"
munged --key-file="$tmp/munge/key" --socket="$tmp/munge/sock" --pid-file="$tmp/munge/pid" \
  --log-file="$tmp/log/munge.log" --seed-file="$tmp/munge/seed" -f 2>>"$tmp/log/munge.err" || true
pids+=("$(cat "$tmp/munge/pid" 2>/dev/null || true)")
cpus="$(nproc)"
cat >"$tmp/slurm.conf" <<CONF
ClusterName=qlc
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=46817
SlurmdPort=46818
AuthType=auth/munge
AuthInfo=socket=$tmp/munge/sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$tmp/ctld
SlurmdSpoolDir=$tmp/d
SlurmctldPidFile=$tmp/ctld.pid
SlurmdPidFile=$tmp/d.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=main Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE
CONF
export SLURM_CONF="$tmp/slurm.conf"
slurmctld -i -f "$SLURM_CONF" 2>>"$tmp/log/slurmctld.err" || true
slurmd -f "$SLURM_CONF" 2>>"$tmp/log/slurmd.err" || true
sleep 1
pids+=("$(cat "$tmp/ctld.pid" 2>/dev/null || true)" "$(cat "$tmp/d.pid" 2>/dev/null || true)")
ready=0
for _ in $(seq 1 60); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qx 'idle'; then ready=1; break; fi
  sleep 1
done
if [ "$ready" -ne 1 ]; then
  echo "skipped: Slurm did not start within a minute:"
  tail -n 3 "$tmp"/log/* 2>/dev/null || true
  exit 77
fi
export QLC_BUILD_DIR="$build" QLC_ROOT="$root" QLC_SLURM_GPUS=0 QLC_SLURM_CPUS=1
cd "$root"
ids="$(ci/slurm/submit.sh 3 "$tmp/runs" "$tmp/merged" --matrix "$matrix" --device cpu)"
echo "$ids"
merge_job="$(printf '%s' "$ids" | sed -n 's/.*merge: job \([0-9]*\).*/\1/p')"
done_in_time=0
for _ in $(seq 1 150); do
  if ! squeue -h -j "$merge_job" 2>/dev/null | grep -q .; then done_in_time=1; break; fi
  sleep 2
done
if [ "$done_in_time" -ne 1 ]; then
  echo "FAIL: the jobs did not end within 5 minutes:" >&2
  squeue -o '%i %j %T %r' >&2 || true
  for f in "$tmp"/log/slurm*.log; do tail -n 5 "$f" >&2; done || true
  exit 1
fi
"$build/harness/qlora-compat" run --matrix "$matrix" --device cpu --out "$tmp/unsharded" >/dev/null
python3 - "$tmp" <<'PY'
import collections, json, pathlib, sys
tmp = pathlib.Path(sys.argv[1])
def outcomes(paths):
    seen = collections.defaultdict(list)
    for p in paths:
        for line in p.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                seen[r["case"]].append(r["outcome"])
    return seen
shards = sorted((tmp / "runs").glob("shard-*-of-3/records.jsonl"))
if len(shards) != 3:
    sys.exit(f"FAIL: {len(shards)} shard run folders, expected 3: {[str(s) for s in shards]}")
sharded, whole = outcomes(shards), outcomes([tmp / "unsharded" / "records.jsonl"])
twice = [c for c, o in sharded.items() if len(o) > 1]
if twice or set(sharded) != set(whole):
    sys.exit(f"FAIL: twice {twice}; missing {set(whole) - set(sharded)}; extra {set(sharded) - set(whole)}")
differ = {c: (sharded[c][0], whole[c][0]) for c in whole if sharded[c][0] != whole[c][0]}
if differ:
    sys.exit(f"FAIL: outcomes differ from the unsharded run: {differ}")
print(f"slurm: 3 array tasks ran the {len(whole)} cases once each, outcomes equal to one unsharded run")
PY
ls "$root"/qlc-merge-*.out >/dev/null 2>&1 && cat "$root"/qlc-merge-*.out && rm -f "$root"/qlc-merge-*.out "$root"/qlc-shard-*.out
