"""Paired significance tests between models (sidrec/significance.py), the ranked-list
fault counts of metrics.tsv (sidrec/metrics.list_faults), and the significance.tsv that
the tiny pipeline writes."""
import numpy as np
import pandas as pd
import pytest

from sidrec.data.tables import make_samples
from sidrec.evaluate import metrics_table, write_predictions
from sidrec.metrics import list_faults, ndcg_at_k, per_row_gains
from sidrec.significance import SIGNIFICANCE_COLUMNS, paired_difference, select_lm, significance_table


def test_per_row_gains_average_to_the_metrics():
    ranked = np.array([[1, 2, 3], [3, 2, 1], [0, 1, 2], [9, 9, 9]])
    targets = np.array([1, 2, 5, 9])
    gains = per_row_gains(ranked, targets, 3)
    np.testing.assert_allclose(gains["NDCG"], [1, 1 / np.log2(3), 0, 1])
    np.testing.assert_array_equal(gains["HR"], [1, 1, 0, 1])
    assert gains["NDCG"].mean() == pytest.approx(ndcg_at_k(ranked, targets, 3))


def test_list_faults_count_padding_out_of_catalogue_ids_and_repeats():
    ranked = np.array([[1, 2, 2, -1], [3, 3, 3, 9], [0, 1, 2, 4]])
    assert list_faults(ranked, n_items=5) == {"invalid": 2, "duplicate": 3}
    assert list_faults(ranked) == {"invalid": 1, "duplicate": 3}  # no catalogue size: only padding
    assert list_faults(np.array([[0, 1], [1, 0]]), n_items=2) == {"invalid": 0, "duplicate": 0}


def test_metrics_table_counts_faults_per_model_and_split(tmp_path):
    s = make_samples(["u0", "u1"], [[0], [1]], [1, 2])
    write_predictions(s, np.array([[1, 1, 7], [2, 0, 3]]), np.zeros((2, 3)), tmp_path / "m_test.parquet")
    table = metrics_table("d", [tmp_path / "m_test.parquet"], ks=(1, 3), n_items=5)
    faults = table[table.metric.isin(["invalid", "duplicate"])].set_index("metric")
    assert faults.loc["invalid", "value"] == 1 and faults.loc["duplicate", "value"] == 1
    assert set(faults.k) == {3} and set(faults.n) == {2}


def test_identical_models_differ_by_nothing():
    a = np.array([1.0, 0.0, 0.5, 0.0])
    out = paired_difference(a, a, n_boot=200, seed=0)
    assert out == {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0}


def test_a_clearly_better_model_has_an_interval_above_zero_and_a_small_p():
    rng = np.random.default_rng(0)
    b = rng.random(300) * 0.5
    a = b + 0.1 + rng.normal(0, 0.05, 300)
    out = paired_difference(a, b, n_boot=2000, seed=1)
    assert 0 < out["ci_low"] < out["diff"] < out["ci_high"]
    assert out["diff"] == pytest.approx(0.1, abs=0.02)
    assert out["p_value"] < 1e-6
    # The same seed draws the same resamples: the interval is reproducible.
    assert paired_difference(a, b, n_boot=2000, seed=1) == out


def test_the_interval_covers_a_difference_of_noise():
    rng = np.random.default_rng(2)
    a, b = rng.random(200), rng.random(200)
    out = paired_difference(a, b, n_boot=2000, seed=0)
    assert out["ci_low"] < 0 < out["ci_high"] and out["p_value"] > 0.05


def write_model(folder, model, split, ranked, targets):
    s = make_samples([f"u{i}" for i in range(len(targets))], [[0]] * len(targets), list(targets))
    path = folder / f"{model}_{split}.parquet"
    write_predictions(s, np.asarray(ranked), np.zeros(np.shape(ranked)), path)
    return path


def test_the_lm_with_the_better_valid_ndcg_is_tested_against_every_other_model(tmp_path):
    targets = np.arange(1, 41) % 20
    hit = np.stack([targets, (targets + 1) % 20], 1)           # target first
    miss = np.stack([(targets + 1) % 20, (targets + 2) % 20], 1)  # target absent
    files = [write_model(tmp_path, "sft", "valid", miss, targets), write_model(tmp_path, "sft", "test", miss, targets),
             write_model(tmp_path, "rl", "valid", hit, targets), write_model(tmp_path, "rl", "test", hit, targets),
             write_model(tmp_path, "popularity", "valid", miss, targets),
             write_model(tmp_path, "popularity", "test", miss, targets)]
    table = significance_table("d", files, lms=("sft", "rl"), k=2, n_boot=500, seed=3)
    assert list(table.columns) == list(SIGNIFICANCE_COLUMNS)
    assert set(table.model) == {"rl"} and set(table.split) == {"test"}
    assert sorted(zip(table.baseline, table.metric)) == [("popularity", "HR"), ("popularity", "NDCG"),
                                                         ("sft", "HR"), ("sft", "NDCG")]
    hr = table[table.metric == "HR"]
    assert (hr["diff"] == 1).all() and (hr.model_value == 1).all() and (hr.baseline_value == 0).all()
    assert (table.p_value < 1e-6).all() and set(table.n) == {40} and set(table.seed) == {3}


def test_ties_on_valid_go_to_the_first_lm():
    gains = {("sft", "valid"): {"NDCG": np.array([0.5])}, ("rl", "valid"): {"NDCG": np.array([0.5])}}
    assert select_lm(gains, ("sft", "rl")) == "sft"
    assert select_lm({}, ("sft", "rl")) is None


def test_the_pipeline_tests_its_selected_lm_against_every_baseline(tiny_pipeline):
    results = tiny_pipeline[0] / "results" / "synth" / "seed-0"
    table = pd.read_csv(results / "significance.tsv", sep="\t")
    metrics = pd.read_csv(results / "metrics.tsv", sep="\t")
    ndcg = metrics[(metrics.metric == "NDCG") & (metrics.k == 10)].set_index(["model", "split"]).value
    selected = "rl" if ndcg["rl", "valid"] > ndcg["sft", "valid"] else "sft"
    assert set(table.model) == {selected}
    assert set(table.baseline) == {"sft", "rl", "popularity", "sasrec"} - {selected}
    assert set(table.metric) == {"NDCG", "HR"} and set(table.k) == {10} and set(table.split) == {"test"}
    assert (table.ci_low <= table["diff"] + 1e-9).all() and (table["diff"] <= table.ci_high + 1e-9).all()
    assert table.p_value.between(0, 1).all()
    # The table's means are metrics.tsv's values.
    for row in table.itertuples():
        assert row.model_value == pytest.approx(ndcg[selected, "test"] if row.metric == "NDCG" else
                                                metrics.set_index(["model", "split", "metric", "k"]).value[
                                                    selected, "test", "HR", 10], abs=1e-6)
