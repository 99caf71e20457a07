"""Results over seeds: every run's metrics.tsv (one per dataset and seed) in one long
table, and each metric's mean, sample std and count over the seeds."""
from __future__ import annotations

import pandas as pd

from ..errors import InputError
from ..io import atomic_path

KEYS = ["dataset", "model", "split", "metric", "k"]
SUMMARY_COLUMNS = KEYS + ["mean", "std", "n_seeds", "per_seed"]


def per_seed_table(metrics_files, seeds) -> pd.DataFrame:
    """metrics_files[i] (a run's metrics.tsv) made with seeds[i] -> one long table:
    dataset, seed, model, split, metric, k, value, n (rows per split)."""
    if len(metrics_files) != len(seeds):
        raise ValueError(f"{len(metrics_files)} metrics files but {len(seeds)} seeds")
    frames = []
    for path, seed in zip(metrics_files, seeds):
        table = pd.read_csv(path, sep="\t")
        missing = [c for c in KEYS + ["value", "n"] if c not in table.columns]
        if missing:
            raise InputError(path, f"missing column(s) {missing}: not a metrics.tsv")
        frames.append(table.assign(seed=int(seed)))
    long = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=KEYS + ["value", "n", "seed"])
    return long[["dataset", "seed", "model", "split", "metric", "k", "value", "n"]].sort_values(
        ["dataset", "seed"], kind="stable", ignore_index=True)


def summarise_seeds(long: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, model, split, metric and k: mean, sample std (NaN with one seed),
    the number of seeds and the per-seed values in seed order ("0.0412 / 0.0398")."""
    ordered = long.sort_values("seed", kind="stable")
    grouped = ordered.groupby(KEYS, sort=False)["value"]
    out = grouped.agg(mean="mean", std="std", n_seeds="count").reset_index()
    out["per_seed"] = grouped.apply(lambda v: " / ".join(f"{x:.4f}" for x in v)).to_numpy()
    return out[SUMMARY_COLUMNS]


def write_seed_summary(*, metrics_files, seeds, summary_out, per_seed_out) -> pd.DataFrame:
    long = per_seed_table(metrics_files, seeds)
    summary = summarise_seeds(long)
    for table, path in ((summary, summary_out), (long, per_seed_out)):
        with atomic_path(path, suffix=".tsv") as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.6f")
    return summary
