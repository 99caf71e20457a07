"""bench/compare_seeds.py: per seed, each side's LM chosen on valid (sft on a tie), the
candidate's differences in the seeds' order whatever order the specs give, the paired
tests, and clear errors for specs that cannot be compared."""
import importlib.util
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import ROOT

spec = importlib.util.spec_from_file_location("compare_seeds", ROOT / "bench" / "compare_seeds.py")
compare_seeds = importlib.util.module_from_spec(spec)
sys.modules["compare_seeds"] = compare_seeds
spec.loader.exec_module(compare_seeds)


def write_metrics(path, sft, rl):
    """sft, rl: (valid NDCG, test NDCG, test HR) at k=10; a k=5 row that must be ignored."""
    rows = []
    for model, (valid, test_ndcg, test_hr) in (("sft", sft), ("rl", rl)):
        for k in (5, 10):
            scale = 1.0 if k == 10 else 9.0
            rows += [{"model": model, "split": "valid", "metric": "NDCG", "k": k, "value": valid * scale},
                     {"model": model, "split": "test", "metric": "NDCG", "k": k, "value": test_ndcg * scale},
                     {"model": model, "split": "test", "metric": "HR", "k": k, "value": test_hr * scale}]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)


def test_per_seed_choice_differences_and_paired_tests(tmp_path):
    # control: rl chosen on seeds 0 and 2, a valid tie on seed 1 -> sft
    write_metrics(tmp_path / "a/seed-0.metrics.tsv", (0.05, 0.01, 0.02), (0.06, 0.07, 0.10))
    write_metrics(tmp_path / "a/seed-1.metrics.tsv", (0.06, 0.08, 0.11), (0.06, 0.01, 0.01))
    write_metrics(tmp_path / "b/seed-2.metrics.tsv", (0.05, 0.01, 0.01), (0.07, 0.06, 0.09))
    # candidate: rl chosen everywhere
    write_metrics(tmp_path / "c/seed-0.metrics.tsv", (0.01, 0.5, 0.5), (0.07, 0.08, 0.12))
    write_metrics(tmp_path / "c/seed-1.metrics.tsv", (0.01, 0.5, 0.5), (0.065, 0.07, 0.10))
    write_metrics(tmp_path / "c/seed-2.metrics.tsv", (0.01, 0.5, 0.5), (0.069, 0.065, 0.09))
    control = compare_seeds.parse_side(["a/seed-{seed}.{kind}.tsv:0,1", "b/seed-{seed}.{kind}.tsv:2"])
    candidate = compare_seeds.parse_side(["c/seed-{seed}.{kind}.tsv:2,0,1"])  # another order
    out = compare_seeds.compare(control, candidate, root=tmp_path)

    assert out["seeds"] == [0, 1, 2]
    assert out["lm"] == (["rl", "sft", "rl"], ["rl", "rl", "rl"])
    valid = out["valid NDCG"]
    np.testing.assert_allclose(valid["control"], [0.06, 0.06, 0.07])
    np.testing.assert_allclose(valid["diff"], [0.01, 0.005, -0.001], atol=1e-12)
    assert valid["ahead"] == 2
    assert valid["t_p"] == pytest.approx(stats.ttest_rel([0.07, 0.065, 0.069], [0.06, 0.06, 0.07]).pvalue)
    np.testing.assert_allclose(out["test NDCG"]["diff"], [0.01, -0.01, 0.005], atol=1e-12)
    np.testing.assert_allclose(out["test HR"]["candidate"], [0.12, 0.10, 0.09])

    table = compare_seeds.markdown(out)
    assert "| valid NDCG | 0.0633 ± 0.0058 | 0.0680 ± 0.0026 | +0.0100 / +0.0050 / -0.0010 | +0.0047 | 2 of 3 |" in table
    assert "control rl / sft / rl, candidate rl / rl / rl" in table


def test_specs_that_cannot_be_compared_are_named(tmp_path):
    with pytest.raises(SystemExit, match="not PATTERN:SEEDS"):
        compare_seeds.parse_side(["a/seed-{seed}.metrics.tsv:0"])        # no {kind}
    with pytest.raises(SystemExit, match="comma-separated integers"):
        compare_seeds.parse_side(["a/seed-{seed}.{kind}.tsv:0;1"])
    with pytest.raises(SystemExit, match="same seeds"):
        compare_seeds.compare([(0, "a/{seed}{kind}"), (1, "a/{seed}{kind}")], [(0, "c/{seed}{kind}")], root=tmp_path)
    with pytest.raises(SystemExit, match="no .*seed-0.metrics.tsv"):
        compare_seeds.compare([(0, "a/seed-{seed}.{kind}.tsv")], [(0, "a/seed-{seed}.{kind}.tsv")], root=tmp_path)
