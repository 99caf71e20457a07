#!/usr/bin/env bash
# Runs THERE (the GPU machine), one call per chunk, with carry [".carry/gpuK"]:
#   bash bench/gpu/stage.sh K
# Checks chunk K against bench/gpu/payload.chunks and copies it into the payload
# folder (SIDREC_PAYLOAD, default /tmp/sidrec-payload), beside the chunks staged before.
# The machine keeps /tmp only while warm (30 s after a call): issue the calls back to back.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
K=${1:?usage: bash bench/gpu/stage.sh K  (K = chunk number, 1..N)}
SRC=.carry/gpu$K
DEST=${SIDREC_PAYLOAD:-/tmp/sidrec-payload}
MANIFEST=bench/gpu/payload.chunks
N=$(awk '{print $1}' "$MANIFEST" | sort -n | tail -1)

fail() { echo "stage.sh: FAILED: $*" >&2; exit 1; }
[ -d "$SRC" ] || fail "no $SRC here: this call must carry [\".carry/gpu$K\"] (chunks 1..$N)"
awk -v k="$K" '$1 == k {print $2 "  " $4}' "$MANIFEST" > /tmp/.sidrec-chunk$K.sha256
[ -s /tmp/.sidrec-chunk$K.sha256 ] || fail "chunk $K is not in $MANIFEST (chunks 1..$N)"
if ! (cd "$SRC" && sha256sum -c --quiet /tmp/.sidrec-chunk$K.sha256); then
    fail "chunk $K does not match $MANIFEST (files named above): rerun bench/gpu/prepare.sh here and commit the manifests"
fi
mkdir -p "$DEST"
cp -r "$SRC"/. "$DEST"/
touch "$DEST/.staged-$K"
staged=$(cd "$DEST" && ls .staged-* 2>/dev/null | sed 's/.staged-//' | sort -n | tr '\n' ' ')
echo "stage.sh: chunk $K of $N staged into $DEST ($(du -sh "$DEST" | cut -f1) there; chunks staged: $staged)"
