"""Mean ± std over seeds of the metrics that `snakemake` wrote, one run folder per seed
(bench/gpu/seeds.sh makes runs/NAME/seed-S/results/DATASET/seed-S/metrics.tsv; a single
run with `seeds: [..]` writes results/summary.tsv itself).

    python bench/seed_summary.py runs/gpu [--k 10] [--tsv summary.tsv]

Prints a markdown table per dataset (model, split, metric: mean ± std (sample std, n
seeds) and the per-seed values, seed order). It only reads metrics.tsv files: every
number in it was computed by the pipeline's metrics rule.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd


def collect(run_dir: Path) -> pd.DataFrame:
    frames = []
    for path in sorted(run_dir.glob("seed-*/results/*/seed-*/metrics.tsv")):
        seed = int(re.fullmatch(r"seed-(\d+)", path.parent.name).group(1))
        frames.append(pd.read_csv(path, sep="\t").assign(seed=seed))
    if not frames:
        raise SystemExit(f"no seed-*/results/*/seed-*/metrics.tsv under {run_dir}")
    return pd.concat(frames, ignore_index=True)


def summarise(long: pd.DataFrame, k: int) -> pd.DataFrame:
    at_k = long[long.k == k].sort_values("seed")
    grouped = at_k.groupby(["dataset", "model", "split", "metric"], sort=False)["value"]
    out = grouped.agg(mean="mean", std="std", n="count").reset_index()
    out["per_seed"] = grouped.apply(lambda v: " / ".join(f"{x:.4f}" for x in v)).to_numpy()
    return out


def markdown(summary: pd.DataFrame, k: int) -> str:
    lines = []
    for dataset, rows in summary.groupby("dataset", sort=False):
        lines += [f"### {dataset}", "", f"| model | split | NDCG@{k} | HR@{k} | NDCG@{k} per seed |",
                  "|---|---|---|---|---|"]
        for (model, split), r in rows.groupby(["model", "split"], sort=False):
            ndcg = r[r.metric == "NDCG"].iloc[0]
            hr = r[r.metric == "HR"].iloc[0]
            lines.append(f"| {model} | {split} | {ndcg['mean']:.4f} ± {ndcg['std']:.4f} (n={ndcg['n']}) "
                         f"| {hr['mean']:.4f} ± {hr['std']:.4f} | {ndcg['per_seed']} |")
        lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--tsv", type=Path, help="also write the long per-seed table and the summary here")
    args = ap.parse_args()
    long = collect(args.run_dir)
    summary = summarise(long, args.k)
    print(markdown(summary, args.k))
    if args.tsv:
        summary.to_csv(args.tsv, sep="\t", index=False, float_format="%.6f")


if __name__ == "__main__":
    main()
