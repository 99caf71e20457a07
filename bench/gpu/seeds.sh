#!/usr/bin/env bash
# Run the pipeline for several seeds at once on one GPU machine, through snakemake itself:
# one `snakemake` per seed, each in its own working directory runs/NAME/seed-S (its own
# results/ and lock), all started together so that their GPU jobs share the one GPU.
#
#   bash bench/gpu/seeds.sh NAME "0 1 2" CONFIGFILE... [-- KEY=VALUE...]
#
# KEY=VALUE pairs go to snakemake's --config beside seeds=[S]. E.g. (after
# `source bench/gpu/setup.sh` on the GPU machine; see bench/gpu/README.md):
#   bash bench/gpu/seeds.sh gpu "0 1 2" config/gpu.yaml config/gpu_amazon.yaml \
#       -- 'run=[ml-100k,Industrial_and_Scientific,Office_Products]'
#
# Every GPU-capable stage gets gpu=1 and each seed's snakemake runs one GPU job at a time
# (--resources gpu=1), so at most one job per seed holds the GPU. Dataset paths are the
# configs' own, relative to the repo root; on a machine where ../shared is elsewhere, put
# an overlay config (datasets.NAME.path) last instead of editing the configs.
# Stopped by `timeout` (SIDREC_TIMEOUT seconds, default 560), it ends cleanly and a rerun
# of the same command continues where it stopped (SFT resumes from its last checkpoint).
# Leaves runs/NAME/seed-S/results/ and writes runs/NAME.tar.gz with each seed's
# metrics.tsv, SFT and RL reports, logs and benchmark files.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
NAME=${1:?usage: seeds.sh NAME "SEEDS" CONFIGFILE... [-- KEY=VALUE...]}
SEEDS=${2:?seeds, e.g. "0 1 2"}
shift 2
CONFIGS=()
while (($#)) && [[ $1 != "--" ]]; do CONFIGS+=("$(realpath "$1")"); shift; done
[[ ${1:-} == "--" ]] && shift
EXTRA=("$@")
((${#CONFIGS[@]})) || { echo "seeds.sh: no config file given" >&2; exit 2; }

n_seeds=$(wc -w <<<"$SEEDS")
CORES=${SIDREC_CORES:-$(( $(nproc) / n_seeds ))}
((CORES >= 1)) || CORES=1
TIMEOUT=${SIDREC_TIMEOUT:-560}
GPUS=${SIDREC_GPUS:-1}   # 0 runs every stage on the CPU (to try this script anywhere)
GPU_RULES=(embed:gpu=$GPUS quantize:gpu=$GPUS sft:gpu=$GPUS rl:gpu=$GPUS predict:gpu=$GPUS sasrec:gpu=$GPUS)

pids=()
for seed in $SEEDS; do
  dir=runs/$NAME/seed-$seed
  mkdir -p "$dir"
  cmd=(timeout -s INT -k 30 "$TIMEOUT" python3 -m snakemake --snakefile "$PWD/Snakefile" --directory "$dir"
       --cores "$CORES" --resources gpu=1 --rerun-incomplete --keep-going
       --set-resources "${GPU_RULES[@]}" --configfile "${CONFIGS[@]}" --config "seeds=[$seed]" "${EXTRA[@]}")
  { printf 'seed %s:' "$seed"; printf ' %q' "${cmd[@]}"; echo; } > "$dir/command.txt"
  cat "$dir/command.txt"
  "${cmd[@]}" > "$dir/snakemake.log" 2>&1 &
  pids+=($!)
done

rc=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || rc=$?
done
for seed in $SEEDS; do
  # Failed jobs: name them and show the end of their logs (the terminal says only "check log").
  grep -h "^Error in rule\|log: " "runs/$NAME/seed-$seed/snakemake.log" 2>/dev/null | grep -A1 "^Error in rule" |
    grep -o "results/[^ ]*\.log" | sort -u | while read -r f; do
      echo "--- seed $seed: $f"; tail -n 25 "runs/$NAME/seed-$seed/$f"; done
  echo "== seed $seed: $(grep -E 'steps \(100%\) done|Nothing to be done|Exiting because|Error' runs/$NAME/seed-$seed/snakemake.log | tail -2 | tr '\n' ' ')"
done

# The small files worth keeping, in one archive (the device returns few files).
(cd runs && find "$NAME" \( -name metrics.tsv -o -name sft_report.json -o -name rl_report.json -o -name sid.meta.json \
    -o -name '*.log' -o -path '*/benchmarks/*.tsv' -o -name command.txt \) -print0 |
  tar -czf "$NAME.tar.gz" --null -T -)
echo "seeds.sh: runs/$NAME.tar.gz ($(du -h runs/$NAME.tar.gz | cut -f1)); exit $rc"
exit $rc
