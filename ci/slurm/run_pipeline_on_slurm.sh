#!/usr/bin/env bash
# run_pipeline_on_slurm.sh - CI: the whole pipeline through `snakemake --profile
# profiles/slurm` on a real single-node SLURM cluster, then proof that every rule of the
# DAG ran as a SLURM job.
#
# Usage (as root, Debian/Ubuntu with apt-get):
#   ci/slurm/run_pipeline_on_slurm.sh [WORKDIR]
#
#   1. starts the local cluster with ci/slurm/start_local_slurm.sh (partitions `cpu` and
#      `gpu`, fake GPUs) and records, by PID, which daemons this run started; on a
#      machine with a SLURM of its own it stops at once with exit status 3 and the
#      reason, having changed nothing;
#   2. writes the tiny synthetic dataset and config of tests/test_pipeline.py into
#      WORKDIR (default: a new temporary folder, deleted after a successful run);
#   3. runs `snakemake --profile profiles/slurm` on it under `timeout -s INT`, with
#      command-line overrides that fit the CI node (below);
#   4. checks that every rule of the DAG was submitted with sbatch, left its per-job
#      SLURM log (showing the rule running inside the job), completed with exit code 0 in slurmctld's records, in partition `gpu`
#      for the GPU stages and `cpu` for the others, and that no rule ran locally
#      (except the target rule `all`); writes WORKDIR/slurm_jobs.json;
#   5. on exit (success, failure or signal): interrupts snakemake if still running,
#      cancels this run's SLURM jobs, stops the daemons it started (by PID, never the
#      ones that were already running).
#
# Environment:
#   PYTHON            interpreter with sidrec + snakemake + the slurm plugin
#                     (default: <repo>/.venv/bin/python). Its folder goes first on PATH:
#                     sbatch jobs inherit the environment (--export=ALL), so the
#                     rules' `python -m sidrec.cli.*` find the same interpreter.
#   SNAKEMAKE_TIMEOUT seconds before snakemake gets SIGINT (default 900).
#   KEEP_WORKDIR=1    keep the temporary WORKDIR after a successful run.
#   FAKE_GPUS, WITH_SLURMDBD, ... are passed on to start_local_slurm.sh.
set -euo pipefail

T0=$SECONDS
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
TIMEOUT=${SNAKEMAKE_TIMEOUT:-900}
LOG_DIR=/var/log/slurm

log() { echo "[slurm-ci $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[[ $(id -u) -eq 0 ]] || die "must run as root (the local cluster is installed and started as root)"
[[ -x $PY ]] || die "no python at $PY (set PYTHON)"
export PATH="$(dirname "$PY"):/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

if [[ $# -ge 1 ]]; then
  WORK=$(mkdir -p "$1" && cd "$1" && pwd); OWN_WORK=0
else
  WORK=$(mktemp -d /tmp/sidrec-slurm-ci.XXXXXX); OWN_WORK=1
fi
SMK_LOG=$WORK/snakemake.log

# Daemons of start_local_slurm.sh, in start order: name:pidfile.
DAEMONS=(munged:/run/munge/munged.pid mariadbd:/run/mysqld/mysqld.pid
  slurmdbd:/run/slurmdbd.pid slurmctld:/run/slurmctld.pid slurmd:/run/slurmd.pid)
declare -A BEFORE=()  # name -> pid alive before this run
STARTED=()            # "name:pid" of daemons this run started
SNAKE_PID=""
OK=0

pid_of() { local f=$1; [[ -s $f ]] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f" || true; }

stop_pid() { # stop_pid NAME PID: TERM, wait up to 10 s, then KILL; only if it is still NAME
  local name=$1 pid=$2 i
  kill -0 "$pid" 2>/dev/null || return 0
  [[ $(cat /proc/"$pid"/comm 2>/dev/null) == "$name" ]] || { log "pid $pid is no longer $name: left alone"; return 0; }
  log "stopping $name (pid $pid, started by this run)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 40; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
  log "$name (pid $pid) still alive: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? i entry jobs
  trap - EXIT INT TERM
  set +e
  if [[ -n $SNAKE_PID ]] && kill -0 "$SNAKE_PID" 2>/dev/null; then
    log "interrupting snakemake (SIGINT to timeout, pid $SNAKE_PID)"
    kill -INT "$SNAKE_PID" 2>/dev/null
    for ((i = 0; i < 120; i++)); do kill -0 "$SNAKE_PID" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$SNAKE_PID" 2>/dev/null && { log "snakemake still alive: SIGKILL"; kill -KILL "$SNAKE_PID"; }
    wait "$SNAKE_PID" 2>/dev/null
  fi
  if command -v squeue >/dev/null && scontrol ping >/dev/null 2>&1; then
    # this run's jobs only: those whose working directory is WORK
    jobs=$(squeue -h -o '%i %Z' 2>/dev/null | awk -v w="$WORK" '$2 == w {print $1}')
    if [[ -n $jobs ]]; then log "cancelling this run's jobs: $(echo $jobs)"; scancel $jobs; fi
  fi
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
    entry=${STARTED[i]}
    stop_pid "${entry%%:*}" "${entry#*:}"
  done
  if ((OK && OWN_WORK)) && [[ ${KEEP_WORKDIR:-0} != 1 ]]; then
    rm -rf "$WORK"
  else
    log "work folder kept: $WORK"
  fi
  log "exit $rc after $((SECONDS - T0))s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------ 1. cluster
if ! why=$("$HERE/start_local_slurm.sh" check); then
  log "REFUSED: $why; this machine's SLURM is left alone"
  exit 3
fi
for entry in "${DAEMONS[@]}"; do
  pid=$(pid_of "${entry#*:}"); [[ -n $pid ]] && BEFORE[${entry%%:*}]=$pid
done
t=$SECONDS
rc=0; "$HERE/start_local_slurm.sh" start || rc=$?
# Recorded before acting on rc: a start that failed half-way (the smoke test, say) has
# already started daemons, and the EXIT trap must stop them too.
for entry in "${DAEMONS[@]}"; do
  name=${entry%%:*}; pid=$(pid_of "${entry#*:}")
  # started here: not running before, or restarted (config changed) with a new PID
  if [[ -n $pid && $pid != "${BEFORE[$name]:-}" ]]; then STARTED+=("$name:$pid"); fi
done
((rc == 0)) || die "start_local_slurm.sh start failed (exit $rc); started by this run: ${STARTED[*]:-(none)}"
log "cluster up in $((SECONDS - t))s; started by this run: ${STARTED[*]:-(none, all were running)}"

# ------------------------------------------------------------ 2. fixture + config
# The tiny end-to-end config that tests/test_pipeline.py runs (tests/tiny/config.yaml),
# with the overlay that points it at the fixture written here (WORK/paths.yaml).
"$PY" "$REPO/tests/tiny/make_fixture.py" "$WORK"

# ------------------------------------------------------------ 3. snakemake on SLURM
# The profile is used as is, except what cannot fit a 2-CPU CI node: its CPUs per task
# (and sasrec's threads), memory and GPU counts. A top-level key given on the command line replaces the
# profile's whole entry, so set-resources lists every key of the rules it names. The
# GPU stages keep partition `gpu` (both partitions are exercised) but get gpu=0: with
# fake GPUs, `accelerate launch` would start on devices that are /dev/null.
RES=(slurm_partition=cpu mem_mb=1000 runtime=30 cpus_per_task=1 gpu=0)
SET_RES=()
for rule in embed sft rl predict; do
  SET_RES+=("$rule:slurm_partition=gpu" "$rule:gpu=0" "$rule:mem_mb=1000" "$rule:runtime=30" "$rule:cpus_per_task=1")
done
SET_RES+=(sasrec:cpus_per_task=1 sasrec:runtime=30)

cd "$REPO"
CMD=(timeout -s INT -k 60 "$TIMEOUT" "$PY" -m snakemake --profile profiles/slurm
  --directory "$WORK" --snakefile "$REPO/Snakefile" --configfile "$REPO/tests/tiny/config.yaml" "$WORK/paths.yaml"
  --jobs 4 --set-threads sasrec=1 quantize=1 embed=1 sft=1 rl=1 predict=1 --slurm-init-seconds-before-status-checks 2
  --default-resources "${RES[@]}" --set-resources "${SET_RES[@]}")
log "running: ${CMD[*]}"
t=$SECONDS
"${CMD[@]}" >"$SMK_LOG" 2>&1 </dev/null &
SNAKE_PID=$!
tail -n +1 -F --pid="$SNAKE_PID" "$SMK_LOG" >&2 2>/dev/null &
rc=0; wait "$SNAKE_PID" || rc=$?
SNAKE_PID=""
sleep 0.5
log "snakemake exit $rc after $((SECONDS - t))s"
if ((rc != 0)); then
  for f in "$WORK"/results/*/logs/*.log "$WORK"/results/logs/*.log "$WORK"/.snakemake/slurm_logs/*/*/*.log; do
    [[ -f $f ]] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }
  done
  die "snakemake failed (exit $rc; 124 = timed out)"
fi

# ------------------------------------------------------------ 4. every rule was a SLURM job
"$PY" - "$WORK" "$SMK_LOG" "$LOG_DIR/slurmctld.log" <<'EOF'
import json
import re
import subprocess
import sys
from pathlib import Path

work, smk_log, ctld_log = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
EXPECTED = {"dataset", "embed", "item_vectors", "quantize", "sid", "base_tiny", "sft", "rl", "predict",
            "popularity", "sasrec", "sasrec_select", "metrics", "significance", "plots", "provenance",
            "summary"}
GPU_PARTITION_RULES = {"embed", "sft", "rl", "predict"}
text = smk_log.read_text()
errors = []

# The DAG, from Snakemake's "Job stats" table (rule, count), without the target rule.
stats = re.search(r"Job stats:\n(.*?)\ntotal", text, re.S)
dag = {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+$", stats.group(1), re.M)} - {"all"} if stats else set()
if dag != EXPECTED:
    errors.append(f"DAG rules {sorted(dag)} != expected {sorted(EXPECTED)}")

# Local execution prints "localrule NAME:"; a submitted job prints "rule NAME:".
local = set(re.findall(r"^localrule (\w+):", text, re.M)) - {"all"}
if local:
    errors.append(f"rules run locally, not on SLURM: {sorted(local)}")

# "Job 3 has been submitted with SLURM jobid 17 (log: .../slurm_logs/rule_sft/synth/17.log)."
submitted = {}
for m in re.finditer(r"has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)\.?$", text, re.M):
    jobid, path = m.group(1), Path(m.group(2))
    rule = next((p[len("rule_"):] for p in path.parts if p.startswith("rule_")), None)
    # the folder below rule_NAME names the job's wildcards (synth, synth_rl, ...)
    submitted.setdefault(rule, []).append({"jobid": jobid, "log": str(path), "job": path.parent.name})

# slurmctld's own records: the partition each job started in, its exit status.
ctld = ctld_log.read_text(errors="replace") if ctld_log.exists() else ""
def ctld_facts(jobid):
    part = re.search(rf"Allocate JobId={jobid} .*Partition=(\S+)", ctld) or \
        re.search(rf"Started JobId={jobid} in (\S+) on", ctld)
    status = re.search(rf"_job_complete: JobId={jobid} WEXITSTATUS (\d+)", ctld)
    return (part.group(1) if part else None), (int(status.group(1)) if status else None)

for job in (j for jobs in submitted.values() for j in jobs):
    job["partition"], job["exit"] = ctld_facts(job["jobid"])
for rule in sorted(EXPECTED):
    jobs = submitted.get(rule)
    if not jobs:
        errors.append(f"rule {rule}: never submitted to SLURM")
        continue
    want = "gpu" if rule in GPU_PARTITION_RULES else "cpu"
    by_job = {}  # one rule may have several jobs (predict: sft and rl); a retry is a new SLURM job
    for job in jobs:
        by_job.setdefault(job["job"], []).append(job)
    for name, tries in by_job.items():
        last = tries[-1]  # the last try must have succeeded
        if not Path(last["log"]).is_file():
            errors.append(f"rule {rule} ({name}): per-job SLURM log {last['log']} missing")
        elif not re.search(rf"^rule {rule}:", Path(last["log"]).read_text(errors="replace"), re.M):
            errors.append(f"rule {rule} ({name}): per-job SLURM log {last['log']} does not show the rule running")
        if last["partition"] != want:
            errors.append(f"rule {rule} ({name}): SLURM job {last['jobid']} ran in partition {last['partition']!r}, want {want!r}")
        if last["exit"] != 0:
            errors.append(f"rule {rule} ({name}): SLURM job {last['jobid']} exit status {last['exit']!r} in slurmctld.log")
        if len(tries) > 1:
            print(f"note: rule {rule} ({name}) was retried: jobs {[j['jobid'] for j in tries]}", file=sys.stderr)
extra = set(submitted) - EXPECTED
if extra:
    errors.append(f"unexpected submitted rules: {sorted(extra)}")
if not (work / "results/synth/seed-0/metrics.tsv").is_file():
    errors.append("results/synth/seed-0/metrics.tsv missing")

(work / "slurm_jobs.json").write_text(json.dumps({"dag": sorted(dag), "local": sorted(local), "jobs": submitted}, indent=1))
for rule, jobs in sorted(submitted.items()):
    print(f"  {rule:12s} " + ", ".join(f"job {j['jobid']} partition={j['partition']} exit={j['exit']}" for j in jobs),
          file=sys.stderr)
if errors:
    sys.exit("FAILED:\n  " + "\n  ".join(errors))
print(f"OK: all {len(EXPECTED)} rules ran as SLURM jobs", file=sys.stderr)
EOF
# ------------------------------------------------------------ 5. a failing SLURM job
# A malformed row appended to the source's valid.csv makes the first rule (`dataset`)
# fail inside its SLURM job. Expected: snakemake exits non-zero, the job is not
# resubmitted (the profile's `retries: 0`: an input error would only fail again), the
# per-job log names the file, line and problem, and
# the outputs of the rules that finished in step 3 are byte-for-byte untouched
# (`dataset`'s own outputs are removed by Snakemake, as those of a failed job).
"$PY" - "$WORK" <<'EOF'
import csv, hashlib, json, sys
from pathlib import Path
work = Path(sys.argv[1])
skip = ("results/synth/data/", "results/synth/logs/", "results/synth/benchmarks/", "results/logs/",
        "results/benchmarks/")
files = {str(p.relative_to(work)): hashlib.sha256(p.read_bytes()).hexdigest()
         for p in sorted((work / "results").rglob("*"))
         if p.is_file() and not str(p.relative_to(work)).startswith(skip)}
(work / "fault_before.json").write_text(json.dumps(files))
source = work / "source" / "valid.csv"
lines = source.read_text().splitlines()
header = lines[0].split(",")
row = {c: "" for c in header} | {"user_id": "U999", "history_item_id": "[1, two]", "item_id": "3",
                                  "history_item_title": "['x']", "item_title": "x", "history_item_sid": "[]"}
with open(source, "a", newline="") as f:
    csv.DictWriter(f, fieldnames=header).writerow(row)
(work / "fault_line.txt").write_text(str(len(lines) + 1))
EOF
FAULT_LOG="$WORK/snakemake_fault.log"
log "fault run (a malformed row in valid.csv, line $(cat "$WORK/fault_line.txt")): ${CMD[*]}"
rc=0; "${CMD[@]}" >"$FAULT_LOG" 2>&1 </dev/null || rc=$?
log "fault run: snakemake exit $rc"
"$PY" - "$WORK" "$FAULT_LOG" "$rc" <<'EOF'
import hashlib, json, re, sys
from pathlib import Path
work, text, rc = Path(sys.argv[1]), Path(sys.argv[2]).read_text(), int(sys.argv[3])
line = (work / "fault_line.txt").read_text().strip()
before = json.loads((work / "fault_before.json").read_text())
changed = sorted(f for f, h in before.items()
                 if not (work / f).is_file() or hashlib.sha256((work / f).read_bytes()).hexdigest() != h)
jobs = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)\.?$", text, re.M)
dataset_logs = [Path(log) for _, log in jobs if "rule_dataset" in log]
def names_the_problem(path):  # "<path>/valid.csv:<line>: history_item_id cell ... is not a Python literal"
    body = path.read_text(errors="replace") if path.is_file() else ""
    return re.search(rf"valid\.csv:{line}: history_item_id cell .* is not a Python literal", body) is not None
report = {"exit": rc, "dataset_jobs": [j for j, log in jobs if "rule_dataset" in log],
          "other_rules_submitted": sorted({m.group(1) for _, log in jobs
                                           for m in [re.search(r"rule_(\w+)", log)] if m} - {"dataset"}),
          "message_names_file_line_problem": any(names_the_problem(p) for p in
                                                 [*dataset_logs, work / "results/synth/logs/dataset.log"]),
          "checked_outputs": len(before), "changed_outputs": changed}
(work / "slurm_fault.json").write_text(json.dumps(report, indent=1))
print(json.dumps(report), file=sys.stderr)
EOF

OK=1
log "done in $((SECONDS - T0))s"
