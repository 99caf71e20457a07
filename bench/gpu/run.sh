#!/usr/bin/env bash
# Run the pipeline on the GPU machine as ONE snakemake over every dataset and seed of the
# configs (seeds are part of the DAG: --config 'seeds=[0,1,2]'), with up to GPU_SLOTS GPU
# jobs sharing the one GPU at a time:
#
#   bash bench/gpu/run.sh NAME GPU_SLOTS CONFIGFILE... [-- KEY=VALUE...]
#
# e.g. (after `source bench/gpu/setup.sh`; see bench/gpu/README.md):
#   SIDREC_TIMEOUT=550 bash bench/gpu/run.sh rl 4 config/gpu.yaml config/gpu_amazon.yaml \
#       bench/gpu/carried_data.yaml -- 'seeds=[0,1,2]'
#
# Every GPU-capable stage gets gpu=1, so GPU_SLOTS bounds how many run at once (memory:
# an SmolLM2 SFT on Office peaks at 28 GiB). SIDREC_PRIORITY: targets snakemake runs first
# (-P), e.g. one dataset's metrics; SIDREC_TARGETS: build only these files (e.g. a model
# to serve: results/Office_Products/seed-0/sft), instead of everything; SIDREC_OMIT_FROM:
# rules left out with everything downstream of them (e.g. `sft`: build only the upstream
# that candidates of one stage share, then copy it with fork.sh). Stopped by `timeout` (SIDREC_TIMEOUT seconds, default
# 560), it ends cleanly and the same command continues where it stopped (SFT and RL resume
# from their last checkpoint). Leaves runs/NAME/results/ and packs runs/NAME.tar.gz with
# the metrics, summaries, SFT and RL reports, logs and benchmark files.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
NAME=${1:?usage: run.sh NAME GPU_SLOTS CONFIGFILE... [-- KEY=VALUE...]}
SLOTS=${2:?GPU_SLOTS, e.g. 4}
shift 2
CONFIGS=()
while (($#)) && [[ $1 != "--" ]]; do CONFIGS+=("$(realpath "$1")"); shift; done
[[ ${1:-} == "--" ]] && shift
EXTRA=("$@")
((${#CONFIGS[@]})) || { echo "run.sh: no config file given" >&2; exit 2; }

dir=runs/$NAME
mkdir -p "$dir"
PRIORITY=()
TARGETS=()
[[ -n ${SIDREC_TARGETS:-} ]] && read -ra TARGETS <<<"$SIDREC_TARGETS"
OMIT=()
[[ -n ${SIDREC_OMIT_FROM:-} ]] && read -ra OMIT <<<"$SIDREC_OMIT_FROM" && OMIT=(--omit-from "${OMIT[@]}")
[[ -n ${SIDREC_PRIORITY:-} ]] && read -ra PRIORITY <<<"$SIDREC_PRIORITY" && PRIORITY=(--prioritize "${PRIORITY[@]}")
GPU_RULES=(embed:gpu=1 quantize:gpu=1 sft:gpu=1 rl:gpu=1 predict:gpu=1 sasrec:gpu=1)
# The training rules ask for every core (threads: workflow.cores, right on a CPU); on the
# GPU that would run them one at a time, so each gets its share of the cores instead.
T=$(( $(nproc) / SLOTS )); ((T >= 1)) || T=1
GPU_THREADS=(embed=$T quantize=$T sft=$T rl=$T predict=$T sasrec=$T)
# Targets come first: --configfile and --config each take every word after them.
cmd=(timeout -s INT -k 30 "${SIDREC_TIMEOUT:-560}" python3 -m snakemake "${TARGETS[@]}" --snakefile "$PWD/Snakefile"
     --directory "$dir" --cores "$(nproc)" --resources gpu="$SLOTS" --rerun-incomplete --keep-going
     --set-resources "${GPU_RULES[@]}" --set-threads "${GPU_THREADS[@]}" "${PRIORITY[@]}" "${OMIT[@]}" --configfile "${CONFIGS[@]}")
((${#EXTRA[@]})) && cmd+=(--config "${EXTRA[@]}")
{ printf '%q ' "${cmd[@]}"; echo; } >> "$dir/command.txt"
tail -n 1 "$dir/command.txt"
"${cmd[@]}" >> "$dir/snakemake.log" 2>&1
rc=$?

# Failed jobs: name them and show the end of their logs (the terminal says only "check log").
grep -A1 "^Error in rule" "$dir/snakemake.log" 2>/dev/null | grep -o "results/[^ ]*\.log" | sort -u |
  while read -r f; do echo "--- $f"; tail -n 25 "$dir/$f"; done
echo "== $(grep -E 'steps \(100%\) done|Nothing to be done|Exiting because|Error' "$dir/snakemake.log" | tail -2 | tr '\n' ' ')"
grep -E "^\[|of [0-9]+ steps" "$dir/snakemake.log" | tail -3

# The small files worth keeping, in one archive (the device returns few files).
(cd runs && find "$NAME" \( -name metrics.tsv -o -name 'summary*.tsv' -o -name significance.tsv \
    -o -name sft_report.json -o -name rl_report.json -o -name sid.meta.json -o -name sasrec_selection.json \
    -o -name '*.log' -o -path '*/benchmarks/*.tsv' -o -name command.txt -o -name provenance.json \) -print0 |
  tar -czf "$NAME.tar.gz" --null -T -)
echo "run.sh: runs/$NAME.tar.gz ($(du -h "runs/$NAME.tar.gz" | cut -f1)); snakemake exit $rc"
exit $rc
