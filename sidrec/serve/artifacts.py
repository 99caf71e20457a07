"""What a pipeline's results folder (results/DATASET/seed-S) tells the server: which model to
load, the longest history its prompts were trained on, and where the run came from."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..io import read_json
from ..results import ResultsFolder

LMS = ("sft", "rl")


def select_model(results: ResultsFolder) -> str:
    """The LM the pipeline would report: the better valid NDCG@10 of sft and rl in
    metrics.tsv (sft on a tie, as `significance.select_lm`), among those on disk. With
    no such rows, the only LM folder there is; else InputError asking for --model."""
    present = [lm for lm in LMS if (results.model_dir(lm) / "config.json").exists()]
    metrics_path = results.root / "metrics.tsv"
    if metrics_path.exists():
        metrics = pd.read_csv(metrics_path, sep="\t")
        rows = metrics[(metrics["split"] == "valid") & (metrics["metric"] == "NDCG")
                       & (metrics["k"] == 10) & metrics["model"].isin(present)]
        if len(rows):
            scores = {lm: float(v) for lm, v in zip(rows["model"], rows["value"])}
            return max((lm for lm in LMS if lm in scores), key=lambda lm: (scores[lm], -LMS.index(lm)))
    if len(present) == 1:
        return present[0]
    raise InputError(results.root, f"cannot choose a model: no valid NDCG@10 in metrics.tsv for "
                                   f"{present or list(LMS)}; pass --model sft or --model rl")


def history_limit(results: ResultsFolder, model: str) -> int:
    """The most recent items a prompt holds: the longest training history in the SFT
    report (the data stage cut every history to the dataset's max_history, and RL
    starts from that SFT model), else the longest history in data/train.parquet."""
    for folder in (results.model_dir(model), results.model_dir("sft")):
        report = folder / "sft_report.json"
        if report.exists():
            value = read_json(report).get("longest_history")
            if isinstance(value, int) and value > 0:
                return value
    train = results.data / "train.parquet"
    if train.exists():
        histories = pd.read_parquet(train, columns=["history"])["history"]
        if len(histories):
            return int(max(len(h) for h in histories))
    raise InputError(results.root, "no sft_report.json or data/train.parquet to read the history "
                                   "limit from; pass --max-history")


def provenance_sha256(results: ResultsFolder) -> str | None:
    """sha256 of the run's provenance.json, None where the run wrote none."""
    path = results.root / "provenance.json"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def code_commit() -> str | None:
    """The git commit of the code serving, None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None
