"""Predictions files and the metrics table built from them (sidrec/evaluate.py)."""
import numpy as np
import pandas as pd
import pytest

from sidrec.data.tables import make_samples
from sidrec.errors import InputError
from sidrec.evaluate import (EvaluateConfig, metrics_table, parse_prediction_name, read_predictions,
                             write_metrics, write_predictions)


def samples(n=4):
    return make_samples([f"u{i}" for i in range(n)], [[i] for i in range(n)], [i + 1 for i in range(n)])


def test_predictions_round_trip_keep_row_order_and_dtypes(tmp_path):
    s = samples()
    ranked = np.array([[1, 2, 3], [3, 2, 1], [0, 1, 2], [4, 3, 2]])
    scores = -np.arange(12, dtype=np.float64).reshape(4, 3)
    path = tmp_path / "predictions" / "sft_valid.parquet"
    write_predictions(s, ranked, scores, path)
    df = read_predictions(path)
    assert list(df.columns) == ["user", "target", "ranked", "scores"]
    assert df["user"].tolist() == ["u0", "u1", "u2", "u3"]
    np.testing.assert_array_equal(np.stack(df["ranked"]), ranked)
    assert np.stack(df["scores"]).dtype == np.float32
    assert not list(tmp_path.glob("predictions/.*"))  # no temp file left behind


def test_a_row_count_mismatch_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="4 rows but 3"):
        write_predictions(samples(), np.zeros((3, 2), int), np.zeros((3, 2)), tmp_path / "x_valid.parquet")
    assert not (tmp_path / "x_valid.parquet").exists()


@pytest.mark.parametrize("name, expected", [("sft_valid.parquet", ("sft", "valid")),
                                            ("my_model_test.parquet", ("my_model", "test"))])
def test_prediction_names(name, expected):
    assert parse_prediction_name(f"results/d/predictions/{name}") == expected


def test_a_badly_named_predictions_file_is_named():
    with pytest.raises(InputError, match="sft_train.parquet"):
        parse_prediction_name("sft_train.parquet")


def test_metrics_table_values_and_long_format(tmp_path):
    s = samples()  # targets 1, 2, 3, 4
    ranked = np.array([[1, 9, 8], [9, 2, 8], [9, 8, 7], [9, 8, 4]])
    write_predictions(s, ranked, np.zeros((4, 3)), tmp_path / "m_test.parquet")
    table = metrics_table("d", [tmp_path / "m_test.parquet"], ks=(1, 3))
    assert list(table.columns) == ["dataset", "model", "split", "metric", "k", "value", "n"]
    value = table.set_index(["metric", "k"])["value"]
    assert value["HR", 1] == pytest.approx(0.25)
    assert value["HR", 3] == pytest.approx(0.75)
    assert value["NDCG", 3] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(4)) / 4)
    assert set(table.n) == {4}
    write_metrics(table, tmp_path / "metrics.tsv")
    assert pd.read_csv(tmp_path / "metrics.tsv", sep="\t").shape == table.shape


def test_lists_shorter_than_the_largest_k_are_an_error(tmp_path):
    write_predictions(samples(), np.zeros((4, 2), int), np.zeros((4, 2)), tmp_path / "m_valid.parquet")
    with pytest.raises(InputError, match="hold 2 items; metrics need 5"):
        metrics_table("d", [tmp_path / "m_valid.parquet"], ks=(1, 5))


def test_evaluate_config():
    config = EvaluateConfig.from_dict({"ks": [10, 1], "beam_width": 20})
    assert config.k == 10 and config.ks == (10, 1) and config.models == ("sft", "rl", "popularity", "sasrec")
    with pytest.raises(InputError, match="beam"):
        EvaluateConfig.from_dict({"beam": 3})
    with pytest.raises(InputError, match="ks"):
        EvaluateConfig(ks=(0,))
