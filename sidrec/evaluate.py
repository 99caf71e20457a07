"""Predictions (one ranked list per split row) and the metrics table built from them.

Every model, LM or baseline, writes the same predictions file, so metrics, paired
significance tests and outside comparisons all start from the same rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError, config_from_section
from .io import atomic_path
from .metrics import LIST_FAULTS, list_faults, metric_rows

PREDICTION_COLUMNS = ("user", "target", "ranked", "scores")
METRIC_COLUMNS = ("dataset", "model", "split", "metric", "k", "value", "n")


@dataclass(frozen=True)
class EvaluateConfig:
    """The `evaluate` section of the config (its schema defaults are these)."""
    ks: tuple[int, ...] = (1, 3, 5, 10, 20)   # cut-offs; every ranked list is max(ks) long
    beam_width: int = 50        # beams of the constrained search (widened where not certified)
    batch_size: int = 64        # rows per decoding batch
    max_rows: int | None = None  # only the first N rows of each split (smoke tests)
    models: tuple[str, ...] = ("sft", "rl", "popularity", "sasrec")  # the models of metrics.tsv (the workflow's)

    def __post_init__(self):
        object.__setattr__(self, "ks", tuple(int(k) for k in self.ks))
        object.__setattr__(self, "models", tuple(self.models))
        if not self.ks or min(self.ks) < 1:
            raise InputError("evaluate", f"ks must be positive cut-offs, got {list(self.ks)}", key="ks")

    @property
    def k(self) -> int:
        return max(self.ks)

    @classmethod
    def from_dict(cls, params: dict) -> "EvaluateConfig":
        return config_from_section(cls, params, "evaluate")


def predictions_frame(samples: pd.DataFrame, ranked: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """samples: the split table; ranked/scores: [rows, K], best first, row order kept."""
    if len(ranked) != len(samples) or len(scores) != len(samples):
        raise ValueError(f"{len(samples)} rows but {len(ranked)} ranked lists / {len(scores)} scores")
    return pd.DataFrame({
        "user": samples["user"].to_numpy(),
        "target": samples["target"].to_numpy(dtype=np.int64),
        "ranked": list(np.asarray(ranked, dtype=np.int64)),
        "scores": list(np.asarray(scores, dtype=np.float32)),
    })


def write_predictions(samples: pd.DataFrame, ranked: np.ndarray, scores: np.ndarray, path) -> None:
    """The one way any model's ranked lists reach disk: one row per split row, in order."""
    frame = predictions_frame(samples, ranked, scores)
    with atomic_path(path, suffix=".parquet") as tmp:
        frame.to_parquet(tmp, index=False)


def read_predictions(path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "predictions file not found")
    df = pd.read_parquet(path)
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(path, f"missing column(s) {missing}; expected {list(PREDICTION_COLUMNS)}")
    lengths = {len(r) for r in df["ranked"]}
    if len(lengths) > 1:
        raise InputError(path, f"ranked lists differ in length: {sorted(lengths)}")
    return df


def parse_prediction_name(path) -> tuple[str, str]:
    """`.../predictions/{model}_{split}.parquet` -> (model, split)."""
    model, _, split = Path(path).stem.rpartition("_")
    if not model or split not in ("valid", "test"):
        raise InputError(path, "expected a file named {model}_{valid|test}.parquet")
    return model, split


def metrics_table(dataset: str, prediction_files, ks, n_items: int | None = None) -> pd.DataFrame:
    """HR@k and NDCG@k for every k of `ks`, then the counts of LIST_FAULTS ("invalid",
    "duplicate": metric rows whose k is the lists' length and whose value is a count, 0
    expected) of every predictions file. n_items: the catalogue's size (ids >= it are
    invalid); None checks only for padding."""
    rows = []
    for path in prediction_files:
        model, split = parse_prediction_name(path)
        df = read_predictions(path)
        ranked = np.stack(df["ranked"].to_numpy()) if len(df) else np.zeros((0, max(ks)), np.int64)
        if ranked.shape[1] < max(ks):
            raise InputError(path, f"ranked lists hold {ranked.shape[1]} items; metrics need {max(ks)}")
        rows += metric_rows(dataset=dataset, model=model, split=split, ranked=ranked,
                            targets=df["target"].to_numpy(), ks=tuple(ks))
        faults = list_faults(ranked, n_items)
        rows += [{"dataset": dataset, "model": model, "split": split, "metric": name,
                  "k": int(ranked.shape[1]), "value": faults[name], "n": len(df)} for name in LIST_FAULTS]
    return pd.DataFrame(rows, columns=list(METRIC_COLUMNS))


def write_metrics(df: pd.DataFrame, path) -> None:
    with atomic_path(path, suffix=".tsv") as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.6f")
