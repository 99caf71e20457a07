#!/usr/bin/env bash
# Measure a candidate on a finished run's upstream, here (the CPU): a fresh clone of this
# repo at HEAD with SRC's results/ and Snakemake metadata copied in, so that a candidate
# overlay reruns only the stages whose settings it changes (and what follows):
#
#   bash bench/clone_run.sh /tmp/control /tmp/candidate
#   cd /tmp/candidate && snakemake --cores 2 --configfile config/config.yaml OVERLAY.yaml --config 'seeds=[0,1,2]' -n
#
# Check the dry run (-n) lists only the intended stages before running it. SRC is a clone
# (or this repo) that ran the control; it is left as it is. The copied files keep their
# bytes; the times are set so that Snakemake's mtime check sees the clone's sources as
# older than every output (a fresh clone's files are newer than anything copied), and the
# parameter and code checks decide what reruns. bench/RESULTS.md's "a clone ... holding
# the X run's files" runs were made this way (a .venv link: the clone shares this one's).
set -euo pipefail
SRC=$(realpath "${1:?usage: clone_run.sh SRC DEST}")
DEST=${2:?usage: clone_run.sh SRC DEST}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -d "$SRC/results" ] || { echo "clone_run.sh: FAILED: no $SRC/results" >&2; exit 1; }
[ -e "$DEST" ] && { echo "clone_run.sh: FAILED: $DEST exists" >&2; exit 1; }
git clone -q "$REPO" "$DEST"
[ -d "$REPO/.venv" ] && ln -s "$REPO/.venv" "$DEST/.venv"
cp -a "$SRC/results" "$DEST/"
if [ -d "$SRC/.snakemake/metadata" ]; then
    mkdir -p "$DEST/.snakemake" && cp -a "$SRC/.snakemake/metadata" "$DEST/.snakemake/"
fi
# Sources an hour in the past, outputs now.
(cd "$DEST" && git ls-files -z | xargs -0 touch -d '-1 hour' && find results -exec touch -h {} +)
echo "clone_run.sh: $DEST at $(git -C "$DEST" rev-parse --short HEAD) holding $SRC's results"
