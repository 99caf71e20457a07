"""The quality goal's table (issue 15): per dataset and config, the LM the pipeline chose
on valid (sft or rl, per seed) against the pipeline's own SASRec of the same run and the
best peer of ../shared/data/README.md, on test NDCG@10 and HR@10.

    python bench/goal_table.py              # markdown, from the recorded runs below
    python bench/goal_table.py --tsv goal.tsv

It only reads files the pipeline wrote (metrics.tsv and significance.tsv per seed, kept
under bench/results/ by the runs that bench/RESULTS.md describes, each with its command):
the LM of a seed is the one with the higher valid NDCG@10 (the significance rule's
choice, checked against its significance.tsv where the run has one), and the paired
per-row test against SASRec is that file's (bootstrap interval, Wilcoxon p).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"

# The best peer on each split (RecBole SASRec, the best of its grid on valid), test
# NDCG@10 and HR@10, as ../shared/data/README.md gives them; MiniOneRec's published
# test NDCG@10 (arXiv 2510.24431, their own train split: indicative only).
PEERS = {"ml-100k": (0.0712, 0.1474), "Industrial": (0.0800, 0.1105), "Office": (0.0892, 0.1132)}
MINIONEREC = {"Industrial": 0.1167, "Office": 0.1242}


@dataclass(frozen=True)
class Run:
    dataset: str        # a key of PEERS
    config: str         # what ran (config files and overlays), as bench/RESULTS.md names it
    files: str          # bench/results/ path of a seed's files, "{seed}" and "{kind}" filled in
    section: str        # the bench/RESULTS.md section that holds the command
    seeds: tuple[int, ...] = (0, 1, 2)
    # More seeds of the same config from another run: (files, seeds, section) each
    more: tuple[tuple[str, tuple[int, ...], str], ...] = ()

    def seed_files(self) -> list[tuple[int, str]]:
        """(seed, files pattern) for every seed of the row, in order."""
        return [(s, self.files) for s in self.seeds] + [(s, f) for f, seeds, _ in self.more for s in seeds]


# The RESULTS sections of the CPU runs for seeds 3-5 (joined to rows of seeds 0-2)
SEEDS_3_5 = "Industrial and Office: seeds 3-5 for 16 beams and 64 rows, and the default on 6 seeds"
SEEDS_3_5_GEN16 = "Industrial and Office: seeds 3-5 of 16 beams on 64 rows"
ML100K_16_BEAMS = "ml-100k: 16 beam rollouts a row, 6 seeds"

RUNS = [
    Run("ml-100k", "CPU: tiny LM, `config/config.yaml` before 2026-12-05 (SIDs text + SASRec, RL; no distillation)",
        "cpu_ml100k_sid_both/seed-{seed}.{kind}.tsv", "ml-100k: semantic IDs from text and SASRec item embeddings"),
    Run("ml-100k", "CPU: tiny LM (hidden 64), `config/config.yaml` before 7981109 (SIDs text + SASRec, SFT distilled from SASRec at 0.9, RL)",
        "cpu_ml100k_sft_distill90/seed-{seed}.{kind}.tsv", "ml-100k, Industrial and Office: SFT distilled from the seed's SASRec"),
    Run("ml-100k", "CPU: tiny LM at hidden 96, `config/config.yaml` before f579502 (SIDs text + SASRec, SFT distilled from SASRec at 0.9, temperature 1, RL)",
        "cpu_ml100k_tiny_hidden96_distill90/seed-{seed}.{kind}.tsv", "ml-100k: a wider tiny LM, now with distillation"),
    Run("ml-100k", "CPU: tiny LM at hidden 96, `config/config.yaml` before 087fea4 (SIDs text + SASRec, SFT distilled from SASRec at 0.9, temperature 0.5, RL 8 beams)",
        "cpu_ml100k_sft_distill_t05/seed-{seed}.{kind}.tsv", "ml-100k: the teacher at temperature 0.5",
        more=(("cpu_ml100k_seeds345_control/seed-{seed}.{kind}.tsv", (3, 4, 5), ML100K_16_BEAMS),)),
    Run("ml-100k", "CPU default: tiny LM at hidden 96, `config/config.yaml` (SIDs text + SASRec, SFT distilled from SASRec at 0.9, temperature 0.5, RL 16 beams)",
        "cpu_ml100k_rl_gen16/seed-{seed}.{kind}.tsv", ML100K_16_BEAMS,
        more=(("cpu_ml100k_seeds345_rl_gen16/seed-{seed}.{kind}.tsv", (3, 4, 5), ML100K_16_BEAMS),)),
    Run("ml-100k", "GPU: SmolLM2-135M, `config/gpu.yaml` (SIDs text + SASRec; no RL stage)",
        "gpu_h200_ml100k_sid_both/seed-{seed}.{kind}.tsv", "ml-100k with SmolLM2-135M on the H200: the same candidate"),
    Run("Industrial", "CPU: tiny LM, `config/industrial.yaml` before 2026-12-04 (SIDs from text; no RL stage then)",
        "cpu_amazon_tiny_seeds/industrial.seed-{seed}.{kind}.tsv", "Amazon Industrial and Office with the tiny LM on the CPU"),
    Run("Industrial", "CPU: tiny LM, `config/industrial.yaml` before 2026-12-05 (SIDs text + SASRec, RL; no distillation)",
        "cpu_industrial_sid_both/seed-{seed}.{kind}.tsv", "Industrial with the tiny LM: the same candidate"),
    Run("Industrial", "CPU: tiny LM, `config/industrial.yaml` before 65d4ea4 (SIDs text + SASRec, SFT distilled from SASRec at 0.5, RL 60 steps)",
        "cpu_amazon_sft_distill50/industrial.seed-{seed}.{kind}.tsv", "ml-100k, Industrial and Office: SFT distilled from the seed's SASRec"),
    Run("Industrial", "CPU: tiny LM, `config/industrial.yaml` before 89b3555 (SIDs text + SASRec, SFT distilled from SASRec at 0.5, RL 240 steps at lr 1e-4)",
        "cpu_amazon_rl_240/industrial.seed-{seed}.{kind}.tsv", "Industrial and Office: RL four times longer"),
    Run("Industrial", "CPU: tiny LM, `config/industrial.yaml` before c0997ae (SIDs text + SASRec, SFT distilled from SASRec at 0.5, RL 240 steps at lr 4e-4, 16 rows a step)",
        "cpu_amazon_rl_lr4e4/industrial.seed-{seed}.{kind}.tsv", "Industrial and Office: RL's learning rate at 240 steps"),
    Run("Industrial", "CPU: tiny LM, `config/industrial.yaml` before 6459f10 (SIDs text + SASRec, SFT distilled from SASRec at 0.5, RL 240 steps at lr 4e-4, 32 rows a step)",
        "cpu_amazon_rl_rows32/industrial.seed-{seed}.{kind}.tsv", "Industrial and Office: RL's rows a step, and 480 steps",
        more=(("cpu_amazon_seeds345_control/industrial.seed-{seed}.{kind}.tsv", (3, 4, 5), SEEDS_3_5),)),
    Run("Industrial", "CPU: tiny LM, `config/industrial.yaml` before 05e0997 (SIDs text + SASRec, SFT distilled from SASRec at 0.5, RL 240 steps at lr 4e-4, 64 rows a step, 8 beams)",
        "cpu_amazon_rl_rows64/industrial.seed-{seed}.{kind}.tsv", "Industrial and Office: RL's rows a step, and 480 steps",
        more=(("cpu_amazon_seeds345_rl_rows64/industrial.seed-{seed}.{kind}.tsv", (3, 4, 5), SEEDS_3_5),)),
    Run("Industrial", "CPU default: tiny LM, `config/industrial.yaml` (SIDs text + SASRec, SFT distilled from SASRec at 0.5, RL 240 steps at lr 4e-4, 64 rows a step, 16 beams)",
        "cpu_amazon_rl_gen16_rows64/industrial.seed-{seed}.{kind}.tsv", "Industrial and Office: 16 beams on top of 64 rows",
        more=(("cpu_amazon_seeds345_rl_gen16_rows64/industrial.seed-{seed}.{kind}.tsv", (3, 4, 5), SEEDS_3_5_GEN16),)),
    Run("Industrial", "GPU: SmolLM2-135M, `config/gpu.yaml` + `gpu_amazon.yaml` (SIDs from text, RL)",
        "gpu_h200_rl_trie/industrial.seed-{seed}.{kind}.tsv", "Industrial again, with trie-renormalised log-probabilities"),
    Run("Office", "CPU: tiny LM, `config/industrial.yaml` before 2026-12-04 (SIDs from text; no RL stage then)",
        "cpu_amazon_tiny_seeds/office.seed-{seed}.{kind}.tsv", "Amazon Industrial and Office with the tiny LM on the CPU"),
    Run("Office", "CPU: tiny LM, `config/industrial.yaml` before 2026-12-05 (SIDs text + SASRec, RL; no distillation)",
        "cpu_office_sid_both/seed-{seed}.{kind}.tsv", "Office with the tiny LM: the same candidate"),
    Run("Office", "CPU: tiny LM, `config/industrial.yaml` before 65d4ea4 (SIDs text + SASRec, SFT distilled from SASRec at 0.5, RL 60 steps)",
        "cpu_amazon_sft_distill50/office.seed-{seed}.{kind}.tsv", "ml-100k, Industrial and Office: SFT distilled from the seed's SASRec"),
    Run("Office", "CPU: tiny LM, `config/industrial.yaml` before 89b3555 (SIDs text + SASRec, SFT distilled from SASRec at 0.5, RL 240 steps at lr 1e-4)",
        "cpu_amazon_rl_240/office.seed-{seed}.{kind}.tsv", "Industrial and Office: RL four times longer"),
    Run("Office", "CPU: tiny LM, `config/industrial.yaml` before c0997ae (SIDs text + SASRec, SFT distilled from SASRec at 0.5, RL 240 steps at lr 4e-4, 16 rows a step)",
        "cpu_amazon_rl_lr4e4/office.seed-{seed}.{kind}.tsv", "Industrial and Office: RL's learning rate at 240 steps"),
    Run("Office", "CPU: tiny LM, `config/industrial.yaml` before 6459f10 (SIDs text + SASRec, SFT distilled from SASRec at 0.5, RL 240 steps at lr 4e-4, 32 rows a step)",
        "cpu_amazon_rl_rows32/office.seed-{seed}.{kind}.tsv", "Industrial and Office: RL's rows a step, and 480 steps",
        more=(("cpu_amazon_seeds345_control/office.seed-{seed}.{kind}.tsv", (3, 4, 5), SEEDS_3_5),)),
    Run("Office", "CPU: tiny LM, `config/industrial.yaml` before 05e0997 (SIDs text + SASRec, SFT distilled from SASRec at 0.5, RL 240 steps at lr 4e-4, 64 rows a step, 8 beams)",
        "cpu_amazon_rl_rows64/office.seed-{seed}.{kind}.tsv", "Industrial and Office: RL's rows a step, and 480 steps",
        more=(("cpu_amazon_seeds345_rl_rows64/office.seed-{seed}.{kind}.tsv", (3, 4, 5), SEEDS_3_5),)),
    Run("Office", "CPU default: tiny LM, `config/industrial.yaml` (SIDs text + SASRec, SFT distilled from SASRec at 0.5, RL 240 steps at lr 4e-4, 64 rows a step, 16 beams)",
        "cpu_amazon_rl_gen16_rows64/office.seed-{seed}.{kind}.tsv", "Industrial and Office: 16 beams on top of 64 rows",
        more=(("cpu_amazon_seeds345_rl_gen16_rows64/office.seed-{seed}.{kind}.tsv", (3, 4, 5), SEEDS_3_5_GEN16),)),
    Run("Office", "GPU: SmolLM2-135M, `config/gpu.yaml` + `gpu_amazon.yaml` (SIDs from text, RL)",
        "gpu_h200_office_rl/base.seed-{seed}.{kind}.tsv", "Office: RL at gpu.yaml's lr and at a 5× smaller lr"),
]


def value(metrics: pd.DataFrame, model: str, split: str, metric: str, k: int = 10) -> float:
    row = metrics[(metrics.model == model) & (metrics.split == split) & (metrics.metric == metric) & (metrics.k == k)]
    if len(row) != 1:
        raise SystemExit(f"{metrics.attrs['path']}: {len(row)} rows for {model} {split} {metric}@{k}, expected 1")
    return float(row.value.iloc[0])


def chosen_lm(metrics: pd.DataFrame) -> str:
    """The LM the pipeline chooses on valid NDCG@10: sidrec.serve.artifacts.select_model's rule
    (sft on a tie), on the copied metrics.tsv alone (bench/results/ keeps no model folders)."""
    lms = [m for m in ("sft", "rl") if m in set(metrics.model)]
    return max(lms, key=lambda m: (value(metrics, m, "valid", "NDCG"), m == "sft"))


def seed_row(files: str, seed: int, root: Path = RESULTS) -> dict:
    metrics_path = root / files.format(seed=seed, kind="metrics")
    metrics = pd.read_csv(metrics_path, sep="\t")
    metrics.attrs["path"] = metrics_path
    chosen = chosen_lm(metrics)
    row = {"seed": seed, "lm": chosen, "ndcg": value(metrics, chosen, "test", "NDCG"),
           "hr": value(metrics, chosen, "test", "HR"), "sasrec_ndcg": value(metrics, "sasrec", "test", "NDCG"),
           "sasrec_hr": value(metrics, "sasrec", "test", "HR"), "diff": None, "p": None}
    significance_path = root / files.format(seed=seed, kind="significance")
    if significance_path.exists():
        sig = pd.read_csv(significance_path, sep="\t")
        sig = sig[(sig.split == "test") & (sig.baseline == "sasrec") & (sig.metric == "NDCG") & (sig.k == 10)]
        if set(sig.model) != {chosen}:
            raise SystemExit(f"{significance_path}: the LM compared is {set(sig.model)}, valid chooses {chosen}")
        row["diff"], row["p"] = float(sig["diff"].iloc[0]), float(sig.p_value.iloc[0])
    return row


def percent(x: float) -> str:
    """A relative difference, with a decimal where whole percents would round it to 0."""
    return f"{x:+.2%}" if abs(x) < 0.001 else f"{x:+.1%}" if abs(x) < 0.01 else f"{x:+.0%}"


def mean_std(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.4f} ± {v.std(ddof=1):.4f}"


def table(runs=RUNS, root: Path = RESULTS) -> tuple[str, pd.DataFrame]:
    lines = ["| dataset | config | LM chosen on valid (per seed) | test NDCG@10 (per seed) | test HR@10 "
             "| our SASRec, same run: NDCG@10 / HR@10 | LM − SASRec per row, NDCG@10 (Wilcoxon p) "
             "| against the best peer: NDCG@10 / HR@10 | goal: above SASRec and the peer on both |",
             "|---|---|---|---|---|---|---|---|---|"]
    flat = []
    for run in runs:
        rows = [seed_row(files, s, root) for s, files in run.seed_files()]
        peer_ndcg, peer_hr = PEERS[run.dataset]
        ndcg, hr = np.mean([r["ndcg"] for r in rows]), np.mean([r["hr"] for r in rows])
        sas_ndcg, sas_hr = np.mean([r["sasrec_ndcg"] for r in rows]), np.mean([r["sasrec_hr"] for r in rows])
        per_seed = " / ".join(f"{r['ndcg']:.4f}" for r in rows)
        paired = " / ".join("–" if r["diff"] is None else f"{r['diff']:+.4f} ({r['p']:.2g})" for r in rows)
        met = ndcg > max(sas_ndcg, peer_ndcg) and hr > max(sas_hr, peer_hr)
        vs_peer = f"{percent(ndcg / peer_ndcg - 1)} / {percent(hr / peer_hr - 1)}"
        if run.dataset in MINIONEREC:
            vs_peer += f" (MiniOneRec {percent(ndcg / MINIONEREC[run.dataset] - 1)})"
        seeds = f"seeds {', '.join(str(r['seed']) for r in rows)}: " if len(rows) != 3 else ""
        lines.append(f"| {run.dataset} | {run.config} | {seeds}{' / '.join(r['lm'] for r in rows)} "
                     f"| {mean_std([r['ndcg'] for r in rows])} ({per_seed}) | {mean_std([r['hr'] for r in rows])} "
                     f"| {sas_ndcg:.4f} / {sas_hr:.4f} | {paired} | {vs_peer} "
                     f"| {'**met**' if met else 'missed'}{' (stretch 1.10× too)' if met and ndcg >= 1.1 * peer_ndcg else ''} |")
        flat += [{"dataset": run.dataset, "config": run.config, **r} for r in rows]
    return "\n".join(lines), pd.DataFrame(flat)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tsv", type=Path, default=None, help="also write the per-seed rows here")
    args = ap.parse_args(argv)
    markdown, flat = table()
    print(markdown)
    if args.tsv:
        flat.to_csv(args.tsv, sep="\t", index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
