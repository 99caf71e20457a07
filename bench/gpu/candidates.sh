#!/usr/bin/env bash
# Runs THERE (after `source bench/gpu/setup.sh`): several candidates that change one stage,
# side by side on the one GPU, after building the upstream they share once:
#
#   SIDREC_DEADLINE=$(($(date +%s) + 585)) bash bench/gpu/candidates.sh STAGE SLOTS 'seeds=[0,1,2]' \
#       "BASE_CONFIG..." NAME=OVERLAY [NAME=OVERLAY...]
#
# e.g. STAGE sft, BASE "config/gpu.yaml bench/configs/gpu_sft_only.yaml", and
# window=bench/configs/gpu_sft_every_window.yaml. It builds runs/shared (run.sh with
# SIDREC_OMIT_FROM=STAGE), copies it to runs/NAME for each candidate (fork.sh), then runs
# every candidate at once with SLOTS GPU jobs each. The upstream runs SIDREC_UPSTREAM_SLOTS
# GPU jobs at once (default 12): its jobs, SASRec's grid above all, are small and mostly
# CPU-bound; at 3 slots an ml-100k upstream of 3 seeds took ~1,000 s of an H100 (18 SASRec
# jobs of 75-130 s in six waves, 2026-12-05).
# SIDREC_DEADLINE (epoch seconds) ends every snakemake cleanly before the device call's
# limit; the same command in the next call (within 30 s, carrying nothing) continues where
# it stopped: a candidate folder that exists skips the upstream, SFT and RL resume from
# their checkpoints. Each run's archive (runs/NAME.tar.gz) is copied to $OUT when set.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
usage="usage: candidates.sh STAGE SLOTS SEEDS \"BASE_CONFIG...\" NAME=OVERLAY..."
STAGE=${1:?$usage}; SLOTS=${2:?$usage}; SEEDS=${3:?$usage}; read -ra BASE <<<"${4:?$usage}"
shift 4
(($#)) || { echo "candidates.sh: no NAME=OVERLAY given; $usage" >&2; exit 2; }
DEADLINE=${SIDREC_DEADLINE:-$(($(date +%s) + 560))}
left() { echo $((DEADLINE - $(date +%s))); }
for pair in "$@"; do
  [[ $pair == *=* && -f ${pair#*=} ]] || { echo "candidates.sh: '$pair' is not NAME=OVERLAY with an existing overlay file" >&2; exit 2; }
done
ship() { [[ -n ${OUT:-} ]] && cp runs/*.tar.gz "$OUT/" 2>/dev/null; return 0; }

missing=()
for pair in "$@"; do [[ -d runs/${pair%%=*} ]] || missing+=("${pair%%=*}"); done
if ((${#missing[@]})); then
  echo "== candidates.sh: upstream (up to $STAGE) in runs/shared, $(left) s left"
  SIDREC_OMIT_FROM=$STAGE SIDREC_TIMEOUT=$(left) bash bench/gpu/run.sh shared "${SIDREC_UPSTREAM_SLOTS:-12}" "${BASE[@]}" -- "$SEEDS"
  rc=$?
  ((rc == 0)) || { echo "candidates.sh: upstream stopped (exit $rc); run the same command again to continue"; ship; exit "$rc"; }
  for name in "${missing[@]}"; do bash bench/gpu/fork.sh shared "$name" || exit 1; done
fi

echo "== candidates.sh: ${#@} candidates of $STAGE at once, $(left) s left"
pids=()
for pair in "$@"; do
  name=${pair%%=*}
  SIDREC_TIMEOUT=$(left) bash bench/gpu/run.sh "$name" "$SLOTS" "${BASE[@]}" "${pair#*=}" -- "$SEEDS" > "runs/$name.out" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}"; rc=$?; ((rc == 0)) || status=$rc
  pair=${*:$((i + 1)):1}
  echo "--- ${pair%%=*} (exit $rc)"; tail -n 8 "runs/${pair%%=*}.out"
done
ship
exit "$status"
