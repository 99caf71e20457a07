#!/usr/bin/env bash
# Runs THERE: copy run folder runs/FROM to runs/TO (results and Snakemake's metadata, mtimes
# kept), so that a candidate that changes one stage reruns only that stage and what follows:
#   SIDREC_OMIT_FROM=sft bash bench/gpu/run.sh shared 6 CONFIGS...   # upstream once
#   bash bench/gpu/fork.sh shared cand_a; bash bench/gpu/fork.sh shared cand_b
#   bash bench/gpu/run.sh cand_a 3 CONFIGS... overlay_a & bash bench/gpu/run.sh cand_b 3 ... & wait
# Snakemake then sees the upstream as built and current (same params, code and inputs),
# and the candidate's changed settings make the stages that read them stale.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
FROM=${1:?usage: fork.sh FROM TO}
TO=${2:?usage: fork.sh FROM TO}
[ -d "runs/$FROM/results" ] || { echo "fork.sh: FAILED: no runs/$FROM/results" >&2; exit 1; }
[ -e "runs/$TO" ] && { echo "fork.sh: FAILED: runs/$TO exists" >&2; exit 1; }
mkdir -p "runs/$TO"
cp -a "runs/$FROM/results" "runs/$TO/"
[ -d "runs/$FROM/.snakemake" ] && cp -a "runs/$FROM/.snakemake" "runs/$TO/"
# A lock or an incomplete marker belongs to the run that left it, not to the copy.
rm -rf "runs/$TO/.snakemake/locks" "runs/$TO/.snakemake/incomplete"
echo "fork.sh: runs/$FROM -> runs/$TO ($(du -sh "runs/$TO" | cut -f1))"
