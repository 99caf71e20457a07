"""bench/goal_table.py: the LM of each seed is the one with the higher valid NDCG@10, its
paired test against SASRec is read from that seed's significance.tsv, and the goal is
met only above both SASRec and the best peer on NDCG@10 and HR@10."""
import importlib.util
import sys

import pandas as pd
import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("goal_table", ROOT / "bench" / "goal_table.py")
goal = importlib.util.module_from_spec(spec)
sys.modules["goal_table"] = goal  # dataclasses look their module up there
spec.loader.exec_module(goal)


def write_seed(folder, seed, values, significance_model=None):
    """values: {(model, split, metric): value} at k=10 (and a k=5 row that must be ignored)."""
    rows = [{"dataset": "d", "model": m, "split": sp, "metric": me, "k": k, "value": v if k == 10 else 1.0, "n": 9}
            for (m, sp, me), v in values.items() for k in (5, 10)]
    pd.DataFrame(rows).to_csv(folder / f"seed-{seed}.metrics.tsv", sep="\t", index=False)
    if significance_model:
        pd.DataFrame([{"dataset": "d", "seed": seed, "split": "test", "model": significance_model,
                       "baseline": "sasrec", "metric": "NDCG", "k": 10, "diff": 0.01 * (seed + 1), "p_value": 0.5}]
                     ).to_csv(folder / f"seed-{seed}.significance.tsv", sep="\t", index=False)


def lm_values(sft_valid, rl_valid, test_ndcg, test_hr):
    out = {("sasrec", "test", "NDCG"): 0.07, ("sasrec", "test", "HR"): 0.14}
    for model, valid in (("sft", sft_valid), ("rl", rl_valid)):
        out |= {(model, "valid", "NDCG"): valid, (model, "test", "NDCG"): test_ndcg[model],
                (model, "test", "HR"): test_hr[model]}
    return out


def test_the_lm_chosen_on_valid_its_paired_test_and_the_goal(tmp_path):
    # seed 0: rl better on valid; seeds 1, 2: a tie and sft better -> sft
    write_seed(tmp_path, 0, lm_values(0.05, 0.06, {"sft": 0.01, "rl": 0.09}, {"sft": 0.1, "rl": 0.16}), "rl")
    write_seed(tmp_path, 1, lm_values(0.06, 0.06, {"sft": 0.08, "rl": 0.01}, {"sft": 0.16, "rl": 0.1}), "sft")
    write_seed(tmp_path, 2, lm_values(0.07, 0.06, {"sft": 0.085, "rl": 0.01}, {"sft": 0.17, "rl": 0.1}), "sft")
    run = goal.Run("ml-100k", "a config", "seed-{seed}.{kind}.tsv", "a section")
    markdown, flat = goal.table([run], root=tmp_path)
    assert flat.lm.tolist() == ["rl", "sft", "sft"]
    assert flat.ndcg.tolist() == pytest.approx([0.09, 0.08, 0.085])
    assert flat["diff"].tolist() == pytest.approx([0.01, 0.02, 0.03])
    assert "0.0850 ± 0.0050" in markdown and "**met**" in markdown  # above 0.07/0.14 and the peer's 0.0712/0.1474
    # HR below the peer: missed, whatever NDCG does
    for seed in range(3):
        write_seed(tmp_path, seed, lm_values(0.07, 0.06, {"sft": 0.09, "rl": 0.0}, {"sft": 0.145, "rl": 0.0}), "sft")
    assert "| missed |" in goal.table([run], root=tmp_path)[0]


def test_a_significance_file_that_compares_another_lm_is_refused(tmp_path):
    for seed in range(3):
        write_seed(tmp_path, seed, lm_values(0.07, 0.06, {"sft": 0.09, "rl": 0.0}, {"sft": 0.2, "rl": 0.0}), "rl")
    with pytest.raises(SystemExit, match="valid chooses sft"):
        goal.table([goal.Run("ml-100k", "c", "seed-{seed}.{kind}.tsv", "s")], root=tmp_path)


def test_the_recorded_runs_are_all_readable():
    markdown, flat = goal.table()
    assert len(flat) == sum(len(run.seed_files()) for run in goal.RUNS) and flat.lm.isin(["sft", "rl"]).all()
    assert markdown.count("\n") == len(goal.RUNS) + 1


def test_more_seeds_from_another_run_join_the_row(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for seed in range(3):
        write_seed(tmp_path / "a", seed, lm_values(0.05, 0.06, {"sft": 0.0, "rl": 0.08}, {"sft": 0.0, "rl": 0.15}), "rl")
    for seed in (3, 4, 5):
        write_seed(tmp_path / "b", seed, lm_values(0.07, 0.06, {"sft": 0.09, "rl": 0.0}, {"sft": 0.16, "rl": 0.0}), "sft")
    run = goal.Run("ml-100k", "c", "a/seed-{seed}.{kind}.tsv", "s", more=(("b/seed-{seed}.{kind}.tsv", (3, 4, 5), "t"),))
    markdown, flat = goal.table([run], root=tmp_path)
    assert flat.seed.tolist() == [0, 1, 2, 3, 4, 5]
    assert flat.lm.tolist() == ["rl"] * 3 + ["sft"] * 3
    assert "seeds 0, 1, 2, 3, 4, 5: rl / rl / rl / sft / sft / sft" in markdown
    assert "0.0850 ± 0.0055" in markdown  # the mean of six seeds, not three
