"""Stage `sasrec`: train SASRec with early stopping on valid, rank valid and test."""
from __future__ import annotations

from ..baselines.sasrec import SASRecConfig, rank_sasrec, save_sasrec, train_sasrec
from ..data.tables import read_items, read_samples
from ..evaluate import write_predictions


def train_and_predict_sasrec(*, items, train, valid, model_out, splits: dict, params: dict,
                             max_len: int, k: int, device: str = "cpu", log=print) -> dict:
    """`params`: the config's `baselines.sasrec` section (with the run's seed applied);
    `splits`: split name -> (samples parquet, predictions parquet to write)."""
    n_items = len(read_items(items))
    config = SASRecConfig(**dict(params), max_len=max_len, device=device)
    model, report = train_sasrec(read_samples(train, n_items), read_samples(valid, n_items), n_items,
                                 config, log=log)
    save_sasrec(model_out, model, config, report)
    for samples_path, out_path in splits.values():
        samples = read_samples(samples_path, n_items)
        ranked, scores = rank_sasrec(model, samples, k)
        write_predictions(samples, ranked, scores, out_path)
    return report
