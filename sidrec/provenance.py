"""How one dataset's results were made: provenance.json, written by the `provenance` rule.

It records what a reader needs to trust or redo the numbers: the git commit (and whether
the tree had uncommitted edits), Python, the platform and every installed package's
version, the resolved config and its hash, the seeds, the devices, sha256 of every file
from the source data to the metrics, one section per model, and each rule's wall and
CPU time from Snakemake's benchmark files.

The rule takes every file it describes as an input, so any change to one of them (or to
the config) makes provenance.json stale. The git state is read when the rule runs: a
commit that changes no input does not rerun it, and the file hashes say exactly what
each artifact is.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from .io import write_json

# Where a model's training report lives inside its folder (the LM stages write them).
MODEL_REPORTS = {"sft": "sft_report.json", "rl": "rl_report.json"}
# Report keys worth repeating in a model's section (the rest stays in the report).
REPORT_KEYS = ("device", "processes", "cpu_threads", "bf16", "steps", "planned_steps", "seconds",
               "train_seconds", "selected", "selected_step", "best_eval_loss", "peak_gpu_memory_gib")


def sha256(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_hashes(paths) -> dict[str, dict]:
    """{path: {sha256, bytes}} for every file, a folder's files one by one (sorted)."""
    out = {}
    for path in map(Path, paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            out[str(f)] = {"sha256": sha256(f), "bytes": f.stat().st_size}
    return out


def config_hash(config: dict) -> str:
    """sha256 of the config as canonical JSON (sorted keys): equal configs, equal hashes."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def git_state(repo) -> dict:
    """{commit, dirty, changed (git status lines, at most 100)}; {error} outside git."""
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=60, check=True).stdout
    try:
        changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
        return {"commit": git("rev-parse", "HEAD").strip(), "dirty": bool(changed), "changed": changed[:100]}
    except (OSError, subprocess.SubprocessError) as e:
        return {"error": f"no git state: {e}"}


def packages() -> dict[str, str]:
    """Every installed distribution's version, by name (what pip freeze would say)."""
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[name.lower()] = dist.version
    return dict(sorted(found.items()))


def host_devices() -> dict:
    """The CPU and any CUDA devices of the machine writing the file."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no torch or no driver: no CUDA devices to name
        cuda = []
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "cuda": cuda}


def read_benchmark(path) -> dict:
    """One Snakemake benchmark TSV (header + one row per repeat) -> the first row's
    wall (s), CPU (cpu_time) seconds and peak memory (max_rss, MB)."""
    lines = Path(path).read_text().splitlines()
    if len(lines) < 2:
        return {"wall_s": None, "cpu_s": None, "max_rss_mb": None}
    row = dict(zip(lines[0].split("\t"), lines[1].split("\t")))

    def number(key):
        try:
            return float(row[key])
        except (KeyError, ValueError):  # "NA" where psutil could not measure
            return None
    return {"wall_s": number("s"), "cpu_s": number("cpu_time"), "max_rss_mb": number("max_rss")}


def job_name(benchmark) -> str:
    """A job's name from its benchmark file: the stem (sft, predict_rl, base_tiny-ml-100k),
    under its folder's name when the file is below benchmarks/ (sasrec_grid/dropout0.2)."""
    path = Path(benchmark)
    return path.stem if path.parent.name == "benchmarks" else f"{path.parent.name}/{path.stem}"


def rule_times(benchmarks) -> dict[str, dict]:
    """{job name (`job_name`): times}."""
    return {job_name(p): {**read_benchmark(p), "benchmark": str(p)} for p in benchmarks}


def model_section(model: str, files) -> dict:
    """A model's files (folder, checkpoint, predictions) hashed, plus the main lines of
    its training report when it has one."""
    section = {"files": file_hashes(files)}
    for path in map(Path, files):
        report = path / MODEL_REPORTS.get(model, "")
        if model in MODEL_REPORTS and report.is_file():
            full = json.loads(report.read_text())
            section["report"] = {k: full[k] for k in REPORT_KEYS if k in full}
            section["report"]["seed"] = (full.get("config") or {}).get("seed")
            section["report"]["versions"] = full.get("versions")
    return section


def provenance(*, dataset: str, config: dict, seeds: dict, source, artifacts, models: dict, benchmarks,
               repo) -> dict:
    """The provenance record (see the module docstring). source/artifacts: files or
    folders; models: {model: its files}; benchmarks: the benchmark TSVs of the jobs
    that made them; repo: the repository whose git state is recorded."""
    times = rule_times(benchmarks)
    sections = {m: model_section(m, f) for m, f in models.items()}
    return {
        "dataset": dataset,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(repo),
        "python": {"version": sys.version, "executable": sys.executable},
        "platform": {"system": platform.platform(), "node": platform.node()},
        "devices": {"host": host_devices(),  # the stages' own: where they trained
                    "stages": {m: s["report"]["device"] for m, s in sections.items()
                               if "device" in s.get("report", {})}},
        "config_sha256": config_hash(config),
        "config": config,
        "seeds": seeds,
        "files": {"source": file_hashes(source), "artifacts": file_hashes(artifacts)},
        "models": sections,
        "rules": times,
        "total_wall_s": sum(t["wall_s"] or 0 for t in times.values()),
        "total_cpu_s": sum(t["cpu_s"] or 0 for t in times.values()),
        "packages": packages(),
    }


def write_provenance(out, **kwargs) -> dict:
    record = provenance(**kwargs)
    write_json(out, record)
    return record
