#!/usr/bin/env bash
# Runs HERE (the CPU machine with pip and the network), from anywhere in the repo:
#   bash bench/gpu/prepare.sh
# 1. downloads the wheels of bench/gpu/wheels.txt (py3.12, x86-64) into .whl/ and checks,
#    from their metadata, that they close over snakemake's and gguf's requirements;
# 2. lays out the payload in .carry/payload/: wheels/ and data/minionerec-amazon18/
#    (MiniOneRec's Amazon splits from ../shared, which never travels otherwise);
# 3. cuts it into .carry/gpu1, gpu2, ... of at most CHUNK_MIB each (bench/gpu/pack.py; by
#    default what the working tree leaves of a call)
#    and rewrites bench/gpu/payload.sha256 and bench/gpu/payload.chunks.
# .whl/ and .carry/ are ignored (.gitignore); commit the two manifests if they changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$PWD
# A call carries at most 64 MiB: its chunk and the working tree (tracked and
# untracked-not-ignored files, which grows with bench/results/). 2 MiB stay spare: the
# device refused a call that this sum put at 63 MiB (2026-12-05).
CALL_MIB=62
tree=$( { git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null || true; } | awk '{s+=$1} END {print s+0}')
# Unless given, chunks fill what the tree leaves of a call (more chunks as the tree grows).
CHUNK_MIB=${CHUNK_MIB:-$(( CALL_MIB - (tree + 1048575) / 1048576 ))}
PIECE_MIB=${PIECE_MIB:-8}
DATA_SRC=${DATA_SRC:-$REPO/../shared/data/minionerec-amazon18}
[ -d "$DATA_SRC" ] || { echo "prepare.sh: no Amazon data at $DATA_SRC (set DATA_SRC)" >&2; exit 1; }
PY=${PY:-python3}

echo "== wheels -> .whl/"
"$PY" bench/gpu/resolve.py fetch .whl 2> >(grep -v 'is ignored: it is neither' >&2)
"$PY" bench/gpu/resolve.py check .whl

echo "== payload -> .carry/payload/"
rm -rf .carry/payload .carry/pieces .carry/gpu[0-9]*
mkdir -p .carry/payload/wheels .carry/payload/data/minionerec-amazon18
ln .whl/*.whl .carry/payload/wheels/ 2>/dev/null || cp .whl/*.whl .carry/payload/wheels/
for ds in Industrial_and_Scientific Office_Products; do
    [ -d "$DATA_SRC/$ds" ] || { echo "prepare: no $DATA_SRC/$ds" >&2; exit 1; }
    cp -r "$DATA_SRC/$ds" .carry/payload/data/minionerec-amazon18/
done
cp "$DATA_SRC/README.md" .carry/payload/data/minionerec-amazon18/ 2>/dev/null || true
chmod -R u+w .carry/payload/data
# The released files' own checksums (their README) must still hold.
if [ -f "$DATA_SRC/README.md" ]; then
    (cd .carry/payload/data/minionerec-amazon18 &&
     sed -n '/^```$/,/^```$/p' README.md | grep -E '^[0-9a-f]{64}  ' | sha256sum -c --quiet)
fi

echo "== chunks -> .carry/gpuN/"
"$PY" bench/gpu/pack.py .carry/payload .carry --chunk-mib "$CHUNK_MIB" --piece-mib "$PIECE_MIB"

echo "== working tree that travels with every call: $((tree / 1024)) KiB"
for d in .carry/gpu[0-9]*; do
    size=$(find "$d" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
    total=$(( (size + tree) / 1048576 ))
    echo "   $d + tree = $total MiB"
    [ "$total" -lt "$CALL_MIB" ] || { echo "prepare: $d + tree is over $CALL_MIB MiB (the call's 64 less a margin): lower CHUNK_MIB" >&2; exit 1; }
done
n=$(ls -d .carry/gpu[0-9]* | wc -l)
echo "== done: $n chunks. Device calls: bench/gpu/README.md. Manifests:"
git status --short -- bench/gpu/payload.sha256 bench/gpu/payload.chunks
