"""Stages of the SASRec baseline: `sasrec` trains one configuration of the grid with early
stopping on valid; `sasrec_select` keeps the configuration with the best valid NDCG@10
and ranks valid and test with it. The peers (../shared/data/README.md) were tuned the
same way: the best on valid of a small grid, test read once from the chosen model."""
from __future__ import annotations

import json
import shutil

from ..baselines.sasrec import EVAL_K, SASRecConfig, load_sasrec, rank_sasrec, save_sasrec, train_sasrec
from ..data.tables import read_items, read_samples
from ..evaluate import write_predictions
from ..io import atomic_path

VALID_KEY = f"best_valid_ndcg@{EVAL_K}"


def train_sasrec_candidate(*, items, train, valid, model_out, params: dict, max_len: int,
                           device: str = "cpu", log=print) -> dict:
    """Train one configuration (`params`: the config's `baselines.sasrec` section, updated
    with one point of `baselines.sasrec_grid`, with the run's seed applied) and save it
    with its training report, whose best valid NDCG@10 is what selection reads."""
    n_items = len(read_items(items))
    config = SASRecConfig(**dict(params), max_len=max_len, device=device)
    model, report = train_sasrec(read_samples(train, n_items), read_samples(valid, n_items), n_items,
                                 config, log=log)
    save_sasrec(model_out, model, config, report)
    return report


def select_sasrec(*, items, candidates: dict, model_out, selection_out, splits: dict, k: int,
                  log=print) -> dict:
    """Keep the candidate with the highest best-valid NDCG@10 (the first listed on a tie),
    copy its checkpoint to `model_out` and rank every split with it on the CPU.

    candidates: name -> checkpoint path, in grid order; splits: split name -> (samples
    parquet, predictions parquet to write). Writes `selection_out` (JSON): every
    candidate's settings and valid NDCG@10, and the chosen name. Test plays no part."""
    if not candidates:
        raise ValueError("no SASRec candidates to select from")
    log = log or (lambda _msg: None)
    table = []
    for name, path in candidates.items():
        _, config, report = load_sasrec(path)
        if VALID_KEY not in report:
            raise ValueError(f"{path}: checkpoint report has no {VALID_KEY!r}")
        table.append({"name": name, "valid_ndcg@10": float(report[VALID_KEY]),
                      "best_epoch": report.get("best_epoch"), "checkpoint": str(path),
                      "config": {k_: v for k_, v in vars(config).items() if k_ != "device"}})
    best = max(table, key=lambda row: row["valid_ndcg@10"])  # max keeps the first of equals
    log("SASRec grid (valid NDCG@10): " + ", ".join(f"{r['name']} {r['valid_ndcg@10']:.4f}" for r in table)
        + f"; selected {best['name']}")
    with atomic_path(model_out) as tmp:
        shutil.copyfile(best["checkpoint"], tmp)
    model, _, _ = load_sasrec(model_out)
    model = model.to("cpu").eval()
    n_items = len(read_items(items))
    for samples_path, out_path in splits.values():
        samples = read_samples(samples_path, n_items)
        ranked, scores = rank_sasrec(model, samples, k)
        write_predictions(samples, ranked, scores, out_path)
    selection = {"selected": best["name"], "by": f"valid NDCG@{EVAL_K} (early stopping's best epoch)",
                 "candidates": table}
    with atomic_path(selection_out) as tmp:
        tmp.write_text(json.dumps(selection, indent=1))
    return selection
