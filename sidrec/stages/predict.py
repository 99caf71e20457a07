"""Stage `predict`: an LM folder (sft/, later rl/) -> top-K predictions per split row,
by trie-constrained decoding over the whole catalogue."""
from __future__ import annotations

import time

from ..data.tables import read_samples
from ..evaluate import EvaluateConfig, write_predictions
from ..recommend import Recommender


def predict_lm(*, model, items, sid, splits: dict, config: EvaluateConfig, device: str = "cpu",
               log=print) -> None:
    """`splits`: split name -> (samples parquet, predictions parquet to write).
    Every returned item is a catalogue item; any other outcome is an error."""
    recommender = Recommender.from_artifacts(model, items, sid, device=device)
    n_items = recommender.builder.n_items
    for split, (samples_path, out_path) in splits.items():
        samples = read_samples(samples_path, n_items)
        if config.max_rows:
            samples = samples.iloc[: config.max_rows].reset_index(drop=True)
        start = time.perf_counter()
        result = recommender.top_k(samples["history"], config.k, beam_width=config.beam_width,
                                   batch_size=config.batch_size)
        seconds = time.perf_counter() - start
        log(f"{split}: {len(samples)} rows in {seconds:.1f}s ({len(samples) / max(seconds, 1e-9):.1f} rows/s) "
            f"on {device}, invalid outputs {result.invalid}, stats {result.stats}")
        if result.invalid:
            raise RuntimeError(f"{result.invalid} decoded outputs are not catalogue items")
        write_predictions(samples, result.items, result.scores, out_path)
