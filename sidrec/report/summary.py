"""The summary table: each model's NDCG@k and HR@k per split, with a bootstrap 95 %
interval over the split's rows (one run has one seed; the spread over seeds comes from
several runs, bench/seed_summary.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..significance import bootstrap_means, load_gains

SUMMARY_COLUMNS = ("model", "split", "metric", "k", "value", "ci_low", "ci_high", "n")


def summary_table(prediction_files, *, k: int = 10, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    rows = []
    for (model, split), gains in load_gains(prediction_files, k).items():
        for metric in ("NDCG", "HR"):
            values = gains[metric]
            means = bootstrap_means(values, n_boot=n_boot, seed=seed) if values.size else np.array([np.nan])
            rows.append({"model": model, "split": split, "metric": metric, "k": k,
                         "value": float(values.mean()) if values.size else float("nan"),
                         "ci_low": float(np.percentile(means, 2.5)), "ci_high": float(np.percentile(means, 97.5)),
                         "n": int(values.size)})
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
