"""Sweep config settings through the pipeline itself: one `snakemake` run per setting.

Why snakemake: bench/ holds benchmarks only, and none may re-implement a stage or the
DAG (project issue "One pipeline"), so that a swept number is one the product makes.
Every number here comes from the product's own rules (dataset, embed, quantize, sid,
base_tiny, sft, predict, popularity, sasrec, metrics): this script only writes each
setting's config overlay, starts `snakemake` on it in the setting's own working
directory, and reads what the rules wrote (metrics.tsv, sft/sft_report.json). A swept
setting is exactly what `snakemake --configfile ... overlay.yaml` gives, decoded by the
predict rule (exact top-K, evaluate.beam_width beams), and a chosen setting moves into
config/ unchanged. (It replaces bench/sft_sweep.py and bench/sasrec_ml100k.py, which
called the library's training and decoding functions themselves; last at 805db46.)

A settings file (bench/sweeps/*.json) holds nested overrides of the config's own keys
(config/schema.yaml):

    {"comment": "...",
     "base": {"sft": {"epochs": 20}, "lm": {"tiny": {"hidden_size": 64}}},
     "settings": [{"name": "lr005", "config": {"sft": {"lr": 0.005}}},
                  {"name": "seed1", "config": {"seeds": [1]}}]}

For each setting, base and setting are deep-merged (objects key by key, anything else
replaced: Snakemake's own rule for --configfile) into
<repo>/runs/sweep-<settings file stem>/<name>/overlay.yaml (--runs-dir moves
<repo>/runs), and run as

    python -m snakemake --snakefile <repo>/Snakefile --directory runs/sweep-<stem>/<name> \
        --cores C --show-failed-logs [--set-resources embed:gpu=1 ...] \
        --configfile [the --configfile files ...] runs/sweep-<stem>/<name>/overlay.yaml \
        -- results/<dataset>/seed-<s>/metrics.tsv ... # every dataset of `run` x `seeds`

(the Snakefile reads config/config.yaml first by itself). Each setting has its own
working directory, so no artifact is shared, or half-shared, between settings; the
cost is that every setting rebuilds its upstream stages (data, embeddings, SIDs).
A rerun of the same sweep reruns only what is stale, as Snakemake always does.

CPU (2 cores, one setting per core):

    .venv/bin/python bench/sweep.py --settings bench/sweeps/ml100k_tiny_r3.json \
        --workers 2 --cores-per-worker 1 --out sweep.jsonl

GPU (the GPU-capable rules embed, quantize, sft, predict and sasrec get gpu=1, i.e.
`accelerate launch` on one GPU; worker slot j runs its settings with
CUDA_VISIBLE_DEVICES=j % G, so several settings share a GPU when --workers > --gpus:
tiny models leave a GPU mostly idle):

    .venv/bin/python bench/sweep.py --settings bench/sweeps/ml100k_tiny.json \
        --workers 8 --gpus 1 --cores-per-worker 2 --out $OUT/sweep.jsonl

(without a venv, e.g. on a lent GPU machine after `source bench/gpu/setup.sh`, run it
with that machine's `python3`: snakemake is started with the interpreter that runs
this script.)

Extra config files go before the overlay, e.g. the Amazon splits:

    .venv/bin/python bench/sweep.py --settings bench/sweeps/amazon_tiny_history_loss.json \
        --configfile config/industrial.yaml --workers 2 --cores-per-worker 1 --out sweep.jsonl

`--dry-run` passes `-n` to snakemake and records each setting's planned jobs instead
of metrics (seconds, nothing trained).

Output, appended to --out and printed: one JSON line per setting and dataset with the
overlay, per model valid/test NDCG@10 and HR@10 (from metrics.tsv), the SFT report's
steps, best_checkpoint_step, best_eval_loss and train_seconds (null when sft is not
among `evaluate.models`), the setting's wall seconds and the exact snakemake command.
A failed setting gives one line with its error, the log's first lines naming an error
and the last 40 lines of its snakemake log (runs/.../<name>/sweep.log, which
--show-failed-logs fills with the failing rule's log), and the sweep goes on; the exit
status is then 1.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import queue
import re
import shlex
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import NamedTuple

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "config" / "config.yaml"
# The rules with a `gpu` resource (rules/*.smk): under --gpus they get gpu=1.
GPU_RULES = ("embed", "quantize", "sft", "predict", "sasrec")
SFT_REPORT_KEYS = ("steps", "best_checkpoint_step", "best_eval_loss", "train_seconds")
LOG_TAIL = 40
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class Planned(NamedTuple):
    name: str
    workdir: Path
    overlay: dict
    command: list[str]
    datasets: list[str]
    seeds: list[int]


def deep_merge(base: dict, over: dict) -> dict:
    """A new dict: `over` on top of `base`, nested dicts merged key by key, any other
    value (lists included) replaced. Neither argument is modified."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_settings(path) -> dict:
    """Read and check a settings file: {"base": {...}, "settings": [{"name", "config"}]}."""
    path = Path(path)
    spec = json.loads(path.read_text())
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: expected a JSON object")
    old = sorted({"tiny", "sft"} & set(spec))
    if old:
        raise ValueError(f"{path}: top-level {old} is the retired bench/sft_sweep.py format; "
                         "use {\"base\": {\"lm\": {\"tiny\": ...}, \"sft\": ...}, \"settings\": "
                         "[{\"name\": ..., \"config\": {...}}]}")
    unknown = sorted(set(spec) - {"base", "settings", "comment"})
    if unknown:
        raise ValueError(f"{path}: unknown top-level key(s) {unknown}; expected base, settings, comment")
    if not isinstance(spec.get("base", {}), dict):
        raise ValueError(f"{path}: 'base' must be an object of config overrides")
    settings = spec.get("settings")
    if not isinstance(settings, list) or not settings:
        raise ValueError(f"{path}: 'settings' must be a non-empty list")
    seen = set()
    for i, s in enumerate(settings):
        if not isinstance(s, dict) or "name" not in s:
            raise ValueError(f"{path}: settings[{i}] needs a 'name'")
        bad = sorted(set(s) - {"name", "config", "comment"})
        if bad:
            raise ValueError(f"{path}: settings[{i}] ({s['name']}): unknown key(s) {bad}; "
                             "overrides go under 'config', with the config's own keys")
        if not isinstance(s.get("config", {}), dict):
            raise ValueError(f"{path}: settings[{i}] ({s['name']}): 'config' must be an object")
        name = s["name"]
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValueError(f"{path}: setting name {name!r} must be a plain folder name")
        if name in seen:
            raise ValueError(f"{path}: setting name {name!r} appears twice")
        seen.add(name)
    return {"base": spec.get("base", {}), "settings": settings}


def resolve_config(configfiles, overlay: dict) -> dict:
    """config/config.yaml, then each config file, then the overlay, merged as Snakemake
    merges them (no schema defaults: only `run`, `datasets` and `sft` are read here)."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text()) or {}
    for f in configfiles:
        config = deep_merge(config, yaml.safe_load(Path(f).read_text()) or {})
    return deep_merge(config, overlay)


def shadowed_sft_keys(config: dict, overlay: dict) -> list[str]:
    """Keys the overlay sets under `sft` that a dataset's own `datasets.NAME.sft` entry
    overrides with another value (so the setting would not reach that dataset)."""
    wanted = overlay.get("sft") or {}
    out = []
    for name in config.get("run", []):
        own = (config.get("datasets", {}).get(name) or {}).get("sft") or {}
        for key, value in wanted.items():
            if key in own and own[key] != value:
                out.append(f"sft.{key}={value!r} is overridden for {name} by datasets.{name}.sft.{key}="
                           f"{own[key]!r}; set datasets.{name}.sft.{key} to sweep it there")
    return out


def plan(settings_path, configfiles=(), *, runs_dir=None, cores: int = 1, gpus: int = 0,
         dry_run: bool = False) -> list[Planned]:
    """Each setting's name, working directory, overlay and snakemake command (argv).
    Writes nothing; `run_setting` writes the overlay to workdir/overlay.yaml."""
    settings_path = Path(settings_path)
    spec = load_settings(settings_path)
    configfiles = [Path(f).resolve() for f in configfiles]
    for f in configfiles:
        if not f.is_file():
            raise FileNotFoundError(f"--configfile {f}: no such file")
    runs_dir = Path(runs_dir).resolve() if runs_dir is not None else ROOT / "runs"
    sweep_dir = runs_dir / f"sweep-{settings_path.stem}"
    out = []
    for s in spec["settings"]:
        overlay = deep_merge(spec["base"], s.get("config", {}))
        config = resolve_config(configfiles, overlay)
        for warning in shadowed_sft_keys(config, overlay):
            print(f"sweep: setting {s['name']}: {warning}", file=sys.stderr)
        datasets = list(config.get("run") or [])
        if not datasets:
            raise ValueError(f"setting {s['name']}: the resolved config has no datasets in `run`")
        workdir = sweep_dir / s["name"]
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
               "--directory", str(workdir), "--cores", str(cores), "--show-failed-logs"]
        if dry_run:
            cmd.append("-n")
        if gpus > 0:
            cmd += ["--set-resources", *(f"{rule}:gpu=1" for rule in GPU_RULES)]
        cmd += ["--configfile", *map(str, configfiles), str(workdir / "overlay.yaml"), "--"]
        seeds = [int(seed) for seed in config.get("seeds") or [0]]
        cmd += [f"results/{d}/seed-{seed}/metrics.tsv" for d in datasets for seed in seeds]
        out.append(Planned(s["name"], workdir, overlay, cmd, datasets, seeds))
    return out


def read_metrics(path: Path) -> dict:
    """metrics.tsv -> {model: {valid_ndcg10, valid_hr10, test_ndcg10, test_hr10}}."""
    models: dict[str, dict] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if int(row["k"]) != 10 or row["metric"] not in ("HR", "NDCG"):  # not the fault counts
                continue
            key = f"{row['split']}_{row['metric'].lower()}10"
            models.setdefault(row["model"], {})[key] = round(float(row["value"]), 4)
    return models


def read_sft_report(path: Path) -> dict:
    if not path.is_file():
        return {k: None for k in SFT_REPORT_KEYS}
    report = json.loads(path.read_text())
    return {k: report.get(k) for k in SFT_REPORT_KEYS}


def planned_jobs(log_text: str) -> dict:
    """Rule -> job count from a dry run's output (one `rule NAME:` block per job)."""
    return dict(Counter(re.findall(r"^(?:local)?rule (\S+):$", log_text, flags=re.M)))


def tail(path: Path, n: int = LOG_TAIL) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError as e:
        return [f"(no log: {e})"]


def error_lines(path: Path, n: int = 10) -> list[str]:
    """The first lines naming an error: a config that fails validation is reported at the
    top of the log, above a long dump of the schema that fills the tail."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if re.search(r"Error|Exception|Traceback", line)][:n]


def rule_path(path: str) -> str:
    """The rules start `python -m sidrec...` (and `accelerate launch`): when this
    interpreter's folder has a `python` that is this interpreter (a virtual
    environment's bin/), it goes first on PATH; otherwise PATH is left as it is (e.g. a
    machine whose `python` is a shim set up for it)."""
    bindir = Path(sys.executable).parent
    try:
        mine = os.path.samefile(bindir / "python", sys.executable)
    except OSError:
        mine = False
    return f"{bindir}{os.pathsep}{path}" if mine else path


def run_setting(p: Planned, *, gpu: int | None = None, dry_run: bool = False) -> list[dict]:
    """Write the overlay, run snakemake, return the setting's JSON records."""
    p.workdir.mkdir(parents=True, exist_ok=True)
    (p.workdir / "overlay.yaml").write_text(yaml.safe_dump(p.overlay, sort_keys=False))
    env = {**os.environ, "PATH": rule_path(os.environ.get("PATH", ""))}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    log = p.workdir / "sweep.log"
    common = {"name": p.name, "overlay": p.overlay, "command": shlex.join(p.command)}
    if gpu is not None:
        common["gpu"] = gpu
    start = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(p.command, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    wall = round(time.perf_counter() - start, 1)
    if rc != 0:
        return [{"name": p.name, "error": f"snakemake exited with status {rc}", "error_lines": error_lines(log),
                 "log_tail": tail(log), "log": str(log), "wall_seconds": wall, **common}]
    if dry_run:
        return [{**common, "datasets": p.datasets, "dry_run": True, "jobs": planned_jobs(log.read_text()),
                 "wall_seconds": wall}]
    records = []
    for dataset, seed in ((d, seed) for d in p.datasets for seed in p.seeds):
        results = p.workdir / "results" / dataset / f"seed-{seed}"
        try:
            models = read_metrics(results / "metrics.tsv")
            sft = read_sft_report(results / "sft" / "sft_report.json")
        except Exception as e:  # a malformed output must not stop the sweep
            records.append({"name": p.name, "dataset": dataset, "seed": seed, "error": repr(e), "log_tail": tail(log),
                            "wall_seconds": wall, **common})
            continue
        records.append({"name": p.name, "dataset": dataset, "seed": seed, "overlay": p.overlay, "models": models, **sft,
                        "wall_seconds": wall, "command": common["command"],
                        **({"gpu": gpu} if gpu is not None else {})})
    return records


def sweep(planned: list[Planned], *, workers: int = 1, gpus: int = 0, dry_run: bool = False, out=None,
          echo=print) -> list[dict]:
    """Run the planned settings, `workers` at a time; append each record to `out` as its
    setting finishes. Worker slot j uses GPU j % gpus (a setting holds its slot while it runs)."""
    workers = max(1, min(workers, len(planned)))
    slots: queue.Queue = queue.Queue()
    for j in range(workers):
        slots.put(j)

    def one(p: Planned) -> list[dict]:
        slot = slots.get()
        try:
            return run_setting(p, gpu=(slot % gpus) if gpus > 0 else None, dry_run=dry_run)
        except Exception as e:  # e.g. the working directory cannot be written
            return [{"name": p.name, "error": repr(e), "log_tail": [], "command": shlex.join(p.command)}]
        finally:
            slots.put(slot)

    records = []
    sink = open(out, "a") if out is not None else None
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in as_completed([pool.submit(one, p) for p in planned]):
                for record in future.result():
                    line = json.dumps(record)
                    echo(line)
                    if sink is not None:
                        sink.write(line + "\n")
                        sink.flush()
                    records.append(record)
    finally:
        if sink is not None:
            sink.close()
    return records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", required=True, help="bench/sweeps/X.json: {base: {...}, settings: [...]}")
    ap.add_argument("--workers", type=int, default=1, help="settings run at the same time")
    ap.add_argument("--out", required=True, help="JSON lines, appended")
    ap.add_argument("--configfile", nargs="+", action="extend", default=[],
                    help="config files passed before each overlay (after config/config.yaml)")
    ap.add_argument("--cores-per-worker", type=int, default=None,
                    help="snakemake --cores of each setting (default: CPU count / workers)")
    ap.add_argument("--gpus", type=int, default=0, help="GPUs to spread settings over (0: CPU only)")
    ap.add_argument("--runs-dir", default=str(ROOT / "runs"), help="parent of sweep-<stem>/<name>/")
    ap.add_argument("--dry-run", action="store_true", help="snakemake -n: record planned jobs only")
    args = ap.parse_args(argv)
    if args.workers < 1 or args.gpus < 0:
        ap.error("--workers must be >= 1 and --gpus >= 0")
    cores = args.cores_per_worker or max(1, (os.cpu_count() or 1) // args.workers)
    planned = plan(args.settings, args.configfile, runs_dir=args.runs_dir, cores=cores, gpus=args.gpus,
                   dry_run=args.dry_run)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    records = sweep(planned, workers=args.workers, gpus=args.gpus, dry_run=args.dry_run, out=args.out)
    failed = sorted({r["name"] for r in records if "error" in r})
    if failed:
        print(f"sweep: {len(failed)} of {len(planned)} setting(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
