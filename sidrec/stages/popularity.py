"""Stage `popularity`: training-target counts, the same ranked list for every row."""
from __future__ import annotations

from ..baselines.popularity import fit_popularity, rank_popularity
from ..data.tables import read_items, read_samples
from ..evaluate import write_predictions


def predict_popularity(*, items, train, splits: dict, k: int) -> None:
    """`splits`: split name -> (samples parquet, predictions parquet to write)."""
    n_items = len(read_items(items))
    counts = fit_popularity(read_samples(train, n_items), n_items)
    for samples_path, out_path in splits.values():
        samples = read_samples(samples_path, n_items)
        ranked = rank_popularity(counts, len(samples), k)
        write_predictions(samples, ranked, counts[ranked].astype("float32"), out_path)
