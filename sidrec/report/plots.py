"""The report's figures, one function per figure, each drawing from plain inputs (a
stage's JSON report, a table) so it can be called outside the workflow too.

A figure whose source is missing (no LM in `evaluate.models`, an RQ-KMeans quantiser
without a loss curve) is still written, saying why it is empty: the report's list of
figures is the same for every config.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on the machines that run the workflow
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..io import atomic_path  # noqa: E402
from ..provenance import rule_times  # noqa: E402


def _save(fig, path) -> None:
    fig.tight_layout()
    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def _empty(ax, why: str) -> None:
    ax.text(0.5, 0.5, why, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_axis_off()


def quantizer_loss(report: dict | None, path) -> None:
    """The RQ-VAE's training loss and reconstruction loss per epoch (RQ-KMeans: the
    residual MSE after each level)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    curve = (report or {}).get("loss_curve")
    if curve:
        ax.plot(curve["epoch"], curve["loss"], label="loss (recon + quantisation)")
        ax.plot(curve["epoch"], curve["recon_loss"], label="reconstruction")
        ax.set(xlabel="epoch", ylabel="MSE", yscale="log", title="Quantiser training")
        ax.legend()
    elif (report or {}).get("level_mse"):
        mse = report["level_mse"]
        ax.plot(range(1, len(mse) + 1), mse, marker="o")
        ax.set(xlabel="level", ylabel="residual MSE", title="RQ-KMeans: residual after each level")
    else:
        _empty(ax, "no quantiser in this run (no LM among evaluate.models)")
    _save(fig, path)


def code_usage(report: dict | None, meta: dict | None, path) -> None:
    """Fraction of each level's codebook used: by the quantiser's codes, and by the
    final SIDs (after re-spreading; an extra level shows only there)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    raw, final = (report or {}).get("codebook_usage"), (meta or {}).get("usage")
    if raw or final:
        width = 0.4
        if raw:
            ax.bar(np.arange(len(raw)) - width / 2, raw, width, label="quantiser codes")
        if final:
            ax.bar(np.arange(len(final)) + width / 2, final, width, label="final SIDs")
        n = max(len(raw or []), len(final or []))
        ax.set_xticks(range(n), [f"level {chr(ord('a') + i)}" for i in range(n)])
        ax.set(ylabel="fraction of codebook used", ylim=(0, 1.05), title="Code usage per level")
        ax.legend()
    else:
        _empty(ax, "no SIDs in this run")
    _save(fig, path)


def sid_collisions(meta: dict | None, path) -> None:
    """Items sharing their full code tuple: the quantiser's, after re-spreading, and the
    final SIDs (always 0: an extra level tells the rest apart)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if meta:
        count = lambda c: c["items"] if isinstance(c, dict) else int(c)  # noqa: E731
        labels = ["quantiser codes", "after re-spread", "final SIDs"]
        values = [count(meta["collisions_before"]), count(meta.get("collisions_after_respread", 0)),
                  count(meta["collisions_after"])]
        bars = ax.bar(labels, values, color=["tab:red", "tab:orange", "tab:green"])
        ax.bar_label(bars)
        ax.set(ylabel="items sharing a code tuple",
               title=f"SID collisions ({meta['n_items']} items; extra level: {meta.get('extra_levels', 0)})")
    else:
        _empty(ax, "no SIDs in this run")
    _save(fig, path)


def sft_training(report: dict | None, path) -> None:
    """SFT's training loss and validation loss per step."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if report:
        for key, label in (("train_loss", "train"), ("eval_loss", "valid")):
            points = report.get(key) or []
            ax.plot([p["step"] for p in points], [p["loss"] for p in points],
                    marker="." if key == "eval_loss" else None, label=label)
        if report.get("best_checkpoint_step"):
            ax.axvline(report["best_checkpoint_step"], color="grey", ls=":", label="kept checkpoint")
        ax.set(xlabel="step", ylabel="completion loss", title="SFT training")
        ax.legend()
    else:
        _empty(ax, "no SFT model in this run")
    _save(fig, path)


def rl_training(report: dict | None, path) -> None:
    """GRPO per step: loss, mean reward, the fraction of groups whose rewards are all
    equal (zero advantage: no gradient), and valid NDCG@k at each evaluation."""
    fig, axes = plt.subplots(2, 2, figsize=(9, 6))
    if not report:
        for ax in axes.flat:
            _empty(ax, "no RL model in this run")
        _save(fig, path)
        return
    log = report.get("log") or []
    for ax, key, title in zip(axes.flat, ("loss", "reward", "frac_reward_zero_std"),
                              ("loss", "mean reward", "zero-advantage fraction")):
        points = [(h["step"], h[key]) for h in log if h.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker=".")
        ax.set(xlabel="step", title=title)
    ax = axes.flat[3]
    valid = report.get("valid") or []
    key = next((k for e in valid for k in e if k.startswith("valid_ndcg")), None)
    if key:
        ax.plot([e["step"] for e in valid], [e[key] for e in valid], marker="o")
        if report.get("selected_step") is not None:
            ax.axvline(report["selected_step"], color="grey", ls=":", label="kept step")
            ax.legend()
    ax.set(xlabel="step", title=(key or "valid NDCG").replace("valid_ndcg", "valid NDCG"))
    fig.suptitle(f"RL (GRPO): {report.get('selected', '')}")
    _save(fig, path)


def metrics_at_k(metrics: pd.DataFrame, path) -> None:
    """HR@K and NDCG@K against K, one line per model (test solid, valid dashed)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, metric in zip(axes, ("HR", "NDCG")):
        rows = metrics[metrics.metric == metric]
        for i, (model, by_model) in enumerate(rows.groupby("model", sort=False)):
            for split, style in (("test", "-"), ("valid", "--")):
                r = by_model[by_model.split == split].sort_values("k")
                if len(r):
                    ax.plot(r.k, r.value, style, marker="o", color=f"C{i}",
                            label=f"{model}" if split == "test" else None)
        ax.set(xlabel="K", ylabel=f"{metric}@K", title=f"{metric}@K (test solid, valid dashed)")
        ax.legend()
    _save(fig, path)


def summary(table: pd.DataFrame, path) -> None:
    """NDCG@k and HR@k per model and split, with the bootstrap 95 % intervals of the
    summary table as error bars."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    models = list(dict.fromkeys(table.model))
    for ax, metric in zip(axes, ("NDCG", "HR")):
        for j, split in enumerate(("valid", "test")):
            r = table[(table.metric == metric) & (table.split == split)].set_index("model").reindex(models)
            x = np.arange(len(models)) + (j - 0.5) * 0.38
            err = np.vstack([r.value - r.ci_low, r.ci_high - r.value])
            ax.bar(x, r.value, 0.38, yerr=err, capsize=3, label=split)
        k = int(table.k.iloc[0]) if len(table) else 10
        ax.set_xticks(range(len(models)), models)
        ax.set(ylabel=f"{metric}@{k}", title=f"{metric}@{k} ± 95 % bootstrap interval")
        ax.legend()
    _save(fig, path)


def significance(table: pd.DataFrame, path) -> None:
    """The selected LM minus each other model, per metric: mean per-row difference with
    its bootstrap 95 % interval; the Wilcoxon p-value beside each."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    if table.empty:
        for ax in axes:
            _empty(ax, "no LM to test in this run")
        _save(fig, path)
        return
    for ax, metric in zip(axes, ("NDCG", "HR")):
        r = table[table.metric == metric].reset_index(drop=True)
        y = np.arange(len(r))
        ax.errorbar(r["diff"], y, xerr=np.vstack([r["diff"] - r.ci_low, r.ci_high - r["diff"]]), fmt="o", capsize=4)
        ax.axvline(0, color="grey", lw=1)
        ax.set_yticks(y, [f"vs {b}\np={p:.2g}" for b, p in zip(r.baseline, r.p_value)])
        ax.set(xlabel=f"{r.model.iloc[0]} − baseline, {metric}@{int(r.k.iloc[0])} ({r.split.iloc[0]})")
    fig.suptitle("Paired per-row differences (95 % bootstrap interval)")
    _save(fig, path)


def stage_times(benchmarks, path) -> None:
    """Wall and CPU seconds of each job (Snakemake's benchmark files)."""
    times = rule_times(benchmarks)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(times) + 1.5))
    names = list(times)
    y = np.arange(len(names))
    ax.barh(y - 0.2, [times[n]["wall_s"] or 0 for n in names], 0.4, label="wall")
    ax.barh(y + 0.2, [times[n]["cpu_s"] or 0 for n in names], 0.4, label="CPU")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    total = sum(t["wall_s"] or 0 for t in times.values())
    ax.set(xlabel="seconds", title=f"Time per job ({total:.0f} s wall in all)")
    ax.legend()
    _save(fig, path)


def _json_in(folder, name):
    path = Path(folder) / name
    return json.loads(path.read_text()) if path.is_file() else None


def write_plots(*, out: dict, quantizer_files, lm_dirs, metrics, significance_tsv, predictions, benchmarks,
                k: int = 10, seed: int = 0) -> None:
    """Every figure and the summary table. out: {figure name or "summary_table": path};
    quantizer_files: [embeddings, rqvae.ckpt, sid.json, sid.meta.json] or [] (no LM);
    lm_dirs: the sft/ and rl/ folders that exist in this run."""
    from .summary import summary_table

    report = meta = None
    if quantizer_files:
        import torch

        # Only the report is read, through the checkpoint's documented plain-torch form, so
        # that the figures do not import (and rerun on edits to) the quantisers' code.
        ckpt = next(f for f in quantizer_files if str(f).endswith(".ckpt"))
        report = torch.load(ckpt, map_location="cpu", weights_only=True).get("report")
        meta = json.loads(Path(next(f for f in quantizer_files if str(f).endswith(".meta.json"))).read_text())
    lms = {Path(d).name: d for d in lm_dirs}
    quantizer_loss(report, out["quantizer_loss"])
    code_usage(report, meta, out["code_usage"])
    sid_collisions(meta, out["sid_collisions"])
    sft_training(_json_in(lms["sft"], "sft_report.json") if "sft" in lms else None, out["sft_training"])
    rl_training(_json_in(lms["rl"], "rl_report.json") if "rl" in lms else None, out["rl_training"])
    metrics_table = pd.read_csv(metrics, sep="\t")
    metrics_at_k(metrics_table[metrics_table.metric.isin(["HR", "NDCG"])], out["metrics_at_k"])
    table = summary_table(predictions, k=k, seed=seed)
    with atomic_path(out["summary_table"], suffix=".tsv") as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6f")
    summary(table, out["summary"])
    significance(pd.read_csv(significance_tsv, sep="\t"), out["significance"])
    stage_times(benchmarks, out["stage_times"])
