"""The Snakemake workflow itself: it parses, lints clean, plans the full DAG, and stops
on bad names before any job."""
import pytest

from conftest import ROOT, run_snakemake


def test_lint_is_clean():
    out = run_snakemake(ROOT, "--lint")
    assert out.returncode == 0, out.stdout + out.stderr
    text = (out.stdout + out.stderr).lower()
    assert "lints for" not in text, out.stdout + out.stderr


def test_dry_run_plans_every_stage(tmp_path):
    out = run_snakemake(tmp_path, "-n", "--quiet", "rules", "--cores", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout + out.stderr
    for rule in ("dataset", "embed", "quantize", "sid", "base_tiny", "sft", "predict",
                 "popularity", "sasrec", "metrics"):
        assert rule in text, f"rule {rule} missing from the plan:\n{text}"


def test_the_gpu_config_plans_every_stage_with_smollm2(tmp_path):
    # base_smollm2 is one job for all datasets (no {dataset} wildcard): its params, the
    # lineage hash among them, must resolve too (CI runs only the tiny LM).
    out = run_snakemake(tmp_path, "-n", "--quiet", "rules", "--cores", "1",
                        configfiles=[ROOT / "config" / "gpu.yaml"])
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout + out.stderr
    for rule in ("base_smollm2", "sft", "rl", "predict", "sasrec", "metrics"):
        assert rule in text, f"rule {rule} missing from the plan:\n{text}"
    assert "base_tiny" not in text


def test_unknown_dataset_in_run_is_rejected_before_any_job(tmp_path):
    out = run_snakemake(tmp_path, "-n", "--cores", "1", "--config", "run=[nope]")
    assert out.returncode != 0
    assert "nope" in out.stdout + out.stderr


@pytest.mark.parametrize("name", ["..", ".hidden", "a/b"])
def test_a_dataset_name_that_is_no_plain_folder_name_is_rejected(tmp_path, name):
    overlay = tmp_path / "bad.yaml"
    overlay.write_text(f'run: ["{name}"]\ndatasets:\n  "{name}": {{source: movielens}}\n')
    out = run_snakemake(tmp_path, "-n", "--cores", "1", configfiles=[overlay])
    assert out.returncode != 0
    assert "plain folder name" in out.stdout + out.stderr
