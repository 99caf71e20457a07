#!/usr/bin/env bash
# Measure a candidate on a finished run's upstream, here (the CPU): a fresh clone of this
# repo at HEAD with SRC's results/ copied in, so that a candidate reruns only the stage it
# changes and what follows, on the control's bytes:
#
#   bash bench/clone_run.sh /tmp/control /tmp/candidate
#   cd /tmp/candidate && snakemake --cores 2 --configfile config/config.yaml OVERLAY.yaml \
#       --config 'seeds=[0,1,2]' --forcerun STAGE -n      # e.g. STAGE rl, or sft
#
# Check the dry run (-n) lists STAGE and what follows only, then run it without -n.
# Snakemake's metadata is not copied: it names every rule's source inputs by absolute
# path, so in a clone at another path every job would count as changed ("set of input
# files has changed") and rerun. Without it the copied outputs are taken as built, and
# --forcerun names the first stage the candidate changes (it reruns everything after).
# The times are set so that the clone's sources are older than every copied output (a
# fresh clone's files are newer than anything copied). SRC is left as it is. The
# bench/RESULTS.md runs "in a clone holding the X run's files" were made this way (by
# hand on 2026-12-05: the outputs from the changed stage on deleted instead of
# --forcerun, which reruns the same jobs). The clone shares this repo's .venv (a link).
set -euo pipefail
SRC=$(realpath "${1:?usage: clone_run.sh SRC DEST}")
DEST=${2:?usage: clone_run.sh SRC DEST}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -d "$SRC/results" ] || { echo "clone_run.sh: FAILED: no $SRC/results" >&2; exit 1; }
[ -e "$DEST" ] && { echo "clone_run.sh: FAILED: $DEST exists" >&2; exit 1; }
git clone -q "$REPO" "$DEST"
[ -d "$REPO/.venv" ] && ln -s "$REPO/.venv" "$DEST/.venv"
cp -a "$SRC/results" "$DEST/"
# Sources an hour in the past, outputs now: ONE time for every output (find runs touch in
# batches, and an input touched a batch later than its output makes the output stale).
now=$(date +%s)
(cd "$DEST" && git ls-files -z | xargs -0 touch -d '-1 hour' && find results -exec touch -h -d "@$now" {} +)
echo "clone_run.sh: $DEST at $(git -C "$DEST" rev-parse --short HEAD) holding $SRC's results"
