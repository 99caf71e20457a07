"""The Snakemake workflow itself: it parses, lints clean, and plans the full DAG."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run(*args, cwd=ROOT):
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_lint_is_clean():
    out = run("--lint")
    assert out.returncode == 0, out.stdout + out.stderr
    text = (out.stdout + out.stderr).lower()
    assert "lints for" not in text, out.stdout + out.stderr


def test_dry_run_plans_every_stage(tmp_path):
    out = run("-n", "--quiet", "rules", "--directory", str(tmp_path), "--snakefile", str(ROOT / "Snakefile"),
              "--configfile", str(ROOT / "config/config.yaml"))
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout + out.stderr
    for rule in ("dataset", "embed", "quantize", "sid", "base_tiny", "sft", "predict",
                 "popularity", "sasrec", "metrics"):
        assert rule in text, f"rule {rule} missing from the plan:\n{text}"


def test_unknown_dataset_in_run_is_rejected_before_any_job(tmp_path):
    out = run("-n", "--directory", str(tmp_path), "--snakefile", str(ROOT / "Snakefile"),
              "--configfile", str(ROOT / "config/config.yaml"), "--config", "run=[nope]")
    assert out.returncode != 0
    assert "nope" in out.stdout + out.stderr
