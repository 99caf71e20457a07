"""Paired significance of one model against others, row by row of the same split.

Every model's predictions hold one ranked list per split row in the same row order, so
two models can be compared on the same rows: per row, the difference of NDCG@k (and of
HR@k) between them. For each pair this module gives the mean difference, its bootstrap
95 % interval (rows resampled with replacement, the same resamples for every pair) and
the Wilcoxon signed-rank p-value of the per-row differences (rows where both models
score the same are left out, scipy's "wilcox" zero method).

The LM to test is the one with the better valid NDCG@k (sft or rl): choosing on valid
and testing on test keeps the choice out of the test.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .evaluate import parse_prediction_name, read_predictions
from .io import atomic_path
from .metrics import per_row_gains

SIGNIFICANCE_COLUMNS = ("dataset", "seed", "split", "model", "baseline", "metric", "k", "model_value",
                        "baseline_value", "diff", "ci_low", "ci_high", "p_value", "n", "n_boot")


def bootstrap_means(d: np.ndarray, *, n_boot: int, seed: int, chunk: int = 500) -> np.ndarray:
    """float [n_boot]: the mean of `d` over n_boot resamples of its rows with replacement.
    The same seed draws the same resamples for every pair of the same row count; drawn in
    chunks, since [n_boot, rows] at once would be GBs on the larger datasets."""
    rng = np.random.default_rng(seed)
    sizes = [min(chunk, n_boot - i) for i in range(0, n_boot, chunk)]
    return np.concatenate([d[rng.integers(0, d.size, size=(m, d.size))].mean(1) for m in sizes])


def paired_difference(a, b, *, n_boot: int = 10_000, seed: int = 0, level: float = 0.95) -> dict:
    """a, b float [rows]: one model's and the other's per-row values on the same rows.
    -> diff (mean of a - b), ci_low/ci_high (percentile bootstrap), p_value (two-sided
    Wilcoxon signed-rank; 1.0 when every row ties); nan for no rows."""
    from scipy.stats import wilcoxon

    d = np.asarray(a, float) - np.asarray(b, float)
    if d.size == 0:
        return {"diff": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "p_value": float("nan")}
    means = bootstrap_means(d, n_boot=n_boot, seed=seed)
    tail = (1 - level) / 2 * 100
    p = 1.0 if not d.any() else float(wilcoxon(d, zero_method="wilcox").pvalue)
    return {"diff": float(d.mean()), "ci_low": float(np.percentile(means, tail)),
            "ci_high": float(np.percentile(means, 100 - tail)), "p_value": p}


def load_gains(prediction_files, k: int) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """predictions/{model}_{split}.parquet files -> {(model, split): per_row_gains}."""
    out = {}
    for path in prediction_files:
        df = read_predictions(path)
        ranked = np.stack(df["ranked"].to_numpy()) if len(df) else np.zeros((0, k), np.int64)
        out[parse_prediction_name(path)] = per_row_gains(ranked, df["target"].to_numpy(), k)
    return out


def select_lm(gains: dict, lms) -> str | None:
    """The LM of `lms` with the best valid NDCG (the first on a tie); None if none has
    valid predictions."""
    scored = [(float(gains[lm, "valid"]["NDCG"].mean()), -i, lm) for i, lm in enumerate(lms)
              if (lm, "valid") in gains]
    return max(scored)[2] if scored else None


def significance_table(dataset: str, prediction_files, *, lms=("sft", "rl"), k: int = 10, split: str = "test",
                       n_boot: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """The selected LM (select_lm) against every other model of `prediction_files` on
    `split`, NDCG@k and HR@k: one row per (baseline, metric), SIGNIFICANCE_COLUMNS."""
    gains = load_gains(prediction_files, k)
    model = select_lm(gains, lms)
    rows = []
    if model is not None and (model, split) in gains:
        ours = gains[model, split]
        n = len(ours["NDCG"])
        for (baseline, s), theirs in gains.items():
            if s != split or baseline == model:
                continue
            if len(theirs["NDCG"]) != n:
                raise ValueError(f"{baseline}_{split} has {len(theirs['NDCG'])} rows, {model}_{split} {n}")
            for metric in ("NDCG", "HR"):
                rows.append({"dataset": dataset, "seed": seed, "split": split, "model": model,
                             "baseline": baseline, "metric": metric, "k": k,
                             "model_value": float(ours[metric].mean()),
                             "baseline_value": float(theirs[metric].mean()),
                             **paired_difference(ours[metric], theirs[metric], n_boot=n_boot, seed=seed), "n": n,
                             "n_boot": n_boot})
    return pd.DataFrame(rows, columns=list(SIGNIFICANCE_COLUMNS))


def write_significance(table: pd.DataFrame, path) -> None:
    with atomic_path(path, suffix=".tsv") as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
