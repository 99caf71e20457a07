"""A candidate against its control, seed by seed, as bench/RESULTS.md selects (issue 15):
the LM each run chooses on valid (sft or rl, goal_table's rule), its valid NDCG@10 (what
selects), test NDCG@10 and HR@10, the candidate's difference per seed, how many seeds it
is ahead on, and a paired t-test and Wilcoxon signed-rank test over the seeds.

    python bench/compare_seeds.py \\
        --control   'cpu_amazon_rl_rows64/industrial.seed-{seed}.{kind}.tsv:0,1,2' \\
                    'cpu_amazon_seeds345_rl_rows64/industrial.seed-{seed}.{kind}.tsv:3,4,5' \\
        --candidate 'cpu_amazon_rl_gen16_rows64/industrial.seed-{seed}.{kind}.tsv:0,1,2' \\
                    'cpu_amazon_seeds345_rl_gen16_rows64/industrial.seed-{seed}.{kind}.tsv:3,4,5'

Each side is one or more PATTERN:SEEDS (PATTERN under bench/results/, as goal_table's
rows name them; SEEDS comma-separated); both sides must cover the same seeds. It reads
only the metrics.tsv files the pipeline wrote.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("goal_table", HERE / "goal_table.py")
goal_table = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("goal_table", goal_table)  # its dataclasses look their module up there
_spec.loader.exec_module(goal_table)

METRICS = (("valid", "NDCG"), ("test", "NDCG"), ("test", "HR"))


def parse_side(specs: list[str]) -> list[tuple[int, str]]:
    """PATTERN:SEEDS specs -> [(seed, pattern)] in the order given; a clear error otherwise."""
    out = []
    for spec in specs:
        pattern, sep, seeds = spec.rpartition(":")
        if not sep or "{seed}" not in pattern or "{kind}" not in pattern:
            raise SystemExit(f"compare_seeds: {spec!r} is not PATTERN:SEEDS with {{seed}} and {{kind}} in PATTERN")
        try:
            out += [(int(s), pattern) for s in seeds.split(",")]
        except ValueError:
            raise SystemExit(f"compare_seeds: {spec!r}: SEEDS must be comma-separated integers, got {seeds!r}")
    return out


def seed_values(pattern: str, seed: int, root: Path) -> dict:
    """The LM chosen on valid for one seed and its valid NDCG@10, test NDCG@10 and HR@10."""
    path = root / pattern.format(seed=seed, kind="metrics")
    if not path.exists():
        raise SystemExit(f"compare_seeds: no {path}")
    metrics = pd.read_csv(path, sep="\t")
    metrics.attrs["path"] = path
    chosen = goal_table.chosen_lm(metrics)
    return {"lm": chosen, **{f"{split} {metric}": goal_table.value(metrics, chosen, split, metric)
                              for split, metric in METRICS}}


def compare(control: list[tuple[int, str]], candidate: list[tuple[int, str]], root: Path = goal_table.RESULTS) -> dict:
    """{metric: {"control": [...], "candidate": [...], "diff": [...], "ahead": n, "t_p": p, "wilcoxon_p": p}}
    over the seeds, plus "seeds" and each side's chosen LMs."""
    seeds_a, seeds_b = [s for s, _ in control], [s for s, _ in candidate]
    if sorted(seeds_a) != sorted(seeds_b) or len(set(seeds_a)) != len(seeds_a):
        raise SystemExit(f"compare_seeds: the sides must cover the same seeds once each: {seeds_a} against {seeds_b}")
    by_seed_b = dict(candidate)
    rows_a = [seed_values(p, s, root) for s, p in control]
    rows_b = [seed_values(by_seed_b[s], s, root) for s in seeds_a]
    out = {"seeds": seeds_a, "lm": ([r["lm"] for r in rows_a], [r["lm"] for r in rows_b])}
    for split, metric in METRICS:
        key = f"{split} {metric}"
        a, b = np.array([r[key] for r in rows_a]), np.array([r[key] for r in rows_b])
        d = b - a
        paired = len(d) > 1 and np.any(d != 0)
        out[key] = {"control": a, "candidate": b, "diff": d, "ahead": int((d > 0).sum()),
                    "t_p": float(stats.ttest_rel(b, a).pvalue) if paired else float("nan"),
                    "wilcoxon_p": float(stats.wilcoxon(b, a).pvalue) if paired else float("nan")}
    return out


def markdown(result: dict) -> str:
    n = len(result["seeds"])
    lines = [f"seeds {' / '.join(map(str, result['seeds']))}; LM chosen on valid: control "
             f"{' / '.join(result['lm'][0])}, candidate {' / '.join(result['lm'][1])}", "",
             "| @10 | control | candidate | candidate − control, per seed | mean | ahead | paired t p | Wilcoxon p |",
             "|---|---|---|---|---|---|---|---|"]
    for split, metric in METRICS:
        r = result[f"{split} {metric}"]
        lines.append(f"| {split} {metric} | {goal_table.mean_std(r['control'])} | {goal_table.mean_std(r['candidate'])} "
                     f"| {' / '.join(f'{x:+.4f}' for x in r['diff'])} | {r['diff'].mean():+.4f} "
                     f"| {r['ahead']} of {n} | {r['t_p']:.2g} | {r['wilcoxon_p']:.2g} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--control", nargs="+", required=True, help="PATTERN:SEEDS, one or more")
    ap.add_argument("--candidate", nargs="+", required=True, help="PATTERN:SEEDS, one or more")
    ap.add_argument("--root", type=Path, default=goal_table.RESULTS, help="where the patterns are (bench/results/)")
    args = ap.parse_args(argv)
    print(markdown(compare(parse_side(args.control), parse_side(args.candidate), args.root)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
