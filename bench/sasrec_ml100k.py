"""Benchmark: SASRec and Popularity on ml-100k leave-one-out, beside the RecBole peers.

Not a test: it trains for minutes. Hyperparameters are chosen on valid only; test is
reported for the best-valid checkpoint (the peers' protocol, /work/shared/data/README.md).

    .venv/bin/python bench/sasrec_ml100k.py --threads 1          # defaults: ~3 min CPU budget
    .venv/bin/python bench/sasrec_ml100k.py --threads 1 --dropout 0.5 --lr 2e-3 \
        --max-epochs 200                                          # peers' protocol: early stop
    .venv/bin/python bench/sasrec_ml100k.py --device cuda        # same code on a GPU

Prints one line per epoch and a summary; `--out` writes the summary and the training
report as JSON, `--checkpoint` the model (sidrec.baselines.sasrec.save_sasrec).

`--threads 1` on a shared 2-core machine: with 2 threads and another busy process, torch's
threads wait on each other and an epoch went from ~25 s to several minutes. On 2 idle
cores, 2 threads gain only ~20% at this model size.
"""
from __future__ import annotations

import argparse
import platform
import time
from dataclasses import asdict

import torch

from sidrec.baselines.popularity import fit_popularity, rank_popularity
from sidrec.baselines.sasrec import SASRecConfig, rank_sasrec, save_sasrec, train_sasrec
from sidrec.data.movielens import load_ml100k
from sidrec.io import write_json
from sidrec.metrics import hit_rate_at_k, ndcg_at_k


def _ndcg_hr(ranked, targets) -> tuple[float, float]:
    return ndcg_at_k(ranked, targets, 10), hit_rate_at_k(ranked, targets, 10)


def parse_args(argv=None) -> argparse.Namespace:
    d = SASRecConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_argument_group("data")
    g.add_argument("--root", default=None, help="ml-100k folder (default: the loader's own)")
    g = p.add_argument_group("model")
    g.add_argument("--hidden", type=int, default=d.hidden)
    g.add_argument("--layers", type=int, default=d.layers)
    g.add_argument("--heads", type=int, default=d.heads)
    g.add_argument("--inner-size", type=int, default=d.inner_size)
    g.add_argument("--dropout", type=float, default=d.dropout)
    g.add_argument("--max-len", type=int, default=d.max_len)
    g = p.add_argument_group("training")
    g.add_argument("--lr", type=float, default=d.lr)
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--max-epochs", type=int, default=d.max_epochs)
    g.add_argument("--patience", type=int, default=d.patience)
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--device", default=d.device)
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    g = p.add_argument_group("output")
    g.add_argument("--out", default=None, help="summary + report JSON")
    g.add_argument("--checkpoint", default=None, help="save the best-valid model here")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = load_ml100k(args.root, max_history=20)
    config = SASRecConfig(
        hidden=args.hidden, layers=args.layers, heads=args.heads, inner_size=args.inner_size,
        dropout=args.dropout, max_len=args.max_len, lr=args.lr, weight_decay=args.weight_decay,
        batch_size=args.batch_size, max_epochs=args.max_epochs, patience=args.patience,
        seed=args.seed, device=args.device)
    print(f"ml-100k: {ds.n_items} items, train {len(ds.train)}, valid {len(ds.valid)}, "
          f"test {len(ds.test)} | {asdict(config)} | torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")

    summary = {"dataset": "ml-100k", "config": asdict(config), "torch": torch.__version__,
               "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine()}
    counts = fit_popularity(ds.train, ds.n_items)
    for split in ("valid", "test"):
        df = ds.split(split)
        ndcg, hr = _ndcg_hr(rank_popularity(counts, len(df), 10), df["target"].to_numpy())
        summary[f"popularity_{split}_ndcg@10"], summary[f"popularity_{split}_hr@10"] = ndcg, hr

    cpu0 = time.process_time()
    model, report = train_sasrec(ds.train, ds.valid, ds.n_items, config)
    summary["train_seconds"] = report["seconds"]
    summary["train_cpu_seconds"] = time.process_time() - cpu0
    summary["epochs_run"], summary["best_epoch"] = len(report["epochs"]), report["best_epoch"]
    for split in ("valid", "test"):
        df = ds.split(split)
        ranked, _ = rank_sasrec(model, df, k=10)
        ndcg, hr = _ndcg_hr(ranked, df["target"].to_numpy())
        summary[f"sasrec_{split}_ndcg@10"], summary[f"sasrec_{split}_hr@10"] = ndcg, hr

    print(" | ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in summary.items() if k != "config"))
    if args.out:
        write_json(args.out, {**summary, "report": report})
    if args.checkpoint:
        save_sasrec(args.checkpoint, model, config, report)
    return summary


if __name__ == "__main__":
    main()
