"""bench/sweep.py: each setting is one `snakemake` run of the real Snakefile on its own
overlay (deep-merged), in its own working directory. No training here: the end-to-end
check is a dry run (`snakemake -n`) on the tiny config."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from make_fixture import make

spec = importlib.util.spec_from_file_location("bench_sweep", ROOT / "bench" / "sweep.py")
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)


def write_settings(path: Path, settings: dict) -> Path:
    path.write_text(json.dumps(settings))
    return path


SETTINGS = {
    "comment": "two settings for the tests",
    "base": {"sft": {"lr": 0.003, "tasks": ["next_item", "sid_to_title"]},
             "lm": {"tiny": {"hidden_size": 32, "num_layers": 1}}},
    "settings": [
        {"name": "a", "config": {"sft": {"lr": 0.01}}},
        {"name": "b", "config": {"lm": {"tiny": {"hidden_size": 48}}, "sft": {"tasks": ["next_item"]}, "seeds": [1]}},
    ],
}


def test_deep_merge_merges_objects_replaces_the_rest_and_copies():
    base = {"sft": {"lr": 1, "tasks": ["x", "y"]}, "lm": {"tiny": {"h": 1, "l": 2}}, "seed": 0}
    over = {"sft": {"tasks": ["z"]}, "lm": {"tiny": {"h": 3}}, "seed": 2, "new": {"k": 1}}
    merged = sweep.deep_merge(base, over)
    assert merged == {"sft": {"lr": 1, "tasks": ["z"]}, "lm": {"tiny": {"h": 3, "l": 2}}, "seed": 2, "new": {"k": 1}}
    assert base["lm"]["tiny"] == {"h": 1, "l": 2} and base["sft"]["tasks"] == ["x", "y"]
    merged["new"]["k"] = 5
    assert over["new"]["k"] == 1


def test_plan_gives_each_setting_its_overlay_workdir_and_the_snakemake_command(tmp_path):
    settings = write_settings(tmp_path / "mysweep.json", SETTINGS)
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({"run": ["ml-100k", "other"],
                                     "datasets": {"other": {"source": "minionerec", "path": "x"}}}))
    planned = sweep.plan(settings, [extra], runs_dir=tmp_path / "runs", cores=3)
    assert [p.name for p in planned] == ["a", "b"]
    a, b = planned
    assert a.overlay == {"sft": {"lr": 0.01, "tasks": ["next_item", "sid_to_title"]},
                         "lm": {"tiny": {"hidden_size": 32, "num_layers": 1}}}
    assert b.overlay == {"sft": {"lr": 0.003, "tasks": ["next_item"]},
                         "lm": {"tiny": {"hidden_size": 48, "num_layers": 1}}, "seeds": [1]}
    workdir = (tmp_path / "runs" / "sweep-mysweep" / "a").resolve()
    assert a.workdir == workdir
    assert a.datasets == ["ml-100k", "other"]
    assert a.command == [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
                         "--directory", str(workdir), "--cores", "3", "--show-failed-logs",
                         "--configfile", str(extra.resolve()), str(workdir / "overlay.yaml"), "--",
                         "results/ml-100k/seed-0/metrics.tsv", "results/other/seed-0/metrics.tsv"]
    assert b.seeds == [1] and b.command[-2:] == ["results/ml-100k/seed-1/metrics.tsv", "results/other/seed-1/metrics.tsv"]
    gpu = sweep.plan(settings, runs_dir=tmp_path / "runs", gpus=2, dry_run=True)[0].command
    assert "-n" in gpu
    i = gpu.index("--set-resources")
    assert gpu[i + 1:i + 6] == ["embed:gpu=1", "quantize:gpu=1", "sft:gpu=1", "predict:gpu=1", "sasrec:gpu=1"]
    assert gpu[gpu.index("--configfile") + 1:gpu.index("--")] == [str(workdir / "overlay.yaml")]


def test_settings_files_are_checked(tmp_path):
    with pytest.raises(ValueError, match="retired"):
        sweep.load_settings(write_settings(tmp_path / "old.json", {"tiny": {}, "sft": {}, "settings": [{"name": "x"}]}))
    with pytest.raises(ValueError, match="twice"):
        sweep.load_settings(write_settings(tmp_path / "dup.json", {"settings": [{"name": "x"}, {"name": "x"}]}))
    with pytest.raises(ValueError, match="under 'config'"):
        sweep.load_settings(write_settings(tmp_path / "flat.json", {"settings": [{"name": "x", "sft": {}}]}))


def test_a_dataset_sft_entry_that_shadows_the_setting_is_reported():
    config = {"run": ["d"], "datasets": {"d": {"sft": {"history_loss": False}}}, "sft": {"history_loss": True}}
    assert sweep.shadowed_sft_keys(config, {"sft": {"history_loss": True}})
    config["datasets"]["d"]["sft"]["history_loss"] = True
    assert not sweep.shadowed_sft_keys(config, {"sft": {"history_loss": True}})


def test_every_sweep_file_plans():
    for path in sorted((ROOT / "bench" / "sweeps").glob("*.json")):
        extra = [ROOT / "config" / "industrial.yaml"] if path.stem.startswith("amazon") else []
        planned = sweep.plan(path, extra)
        assert planned and all(p.command[-1].endswith("metrics.tsv") for p in planned), path


def test_dry_run_end_to_end_on_the_tiny_config(tmp_path):
    configs = make(tmp_path / "fixture")
    settings = {"base": {"sft": {"max_steps": 5}},
                "settings": [{"name": "small", "config": {"sft": {"lr": 0.01}}},
                             {"name": "wide", "config": {"lm": {"tiny": {"hidden_size": 48}}}},
                             {"name": "typo", "config": {"sft": {"no_such_key": 1}}}]}
    path = write_settings(tmp_path / "tinysweep.json", settings)
    out = tmp_path / "sweep.jsonl"
    cmd = [sys.executable, str(ROOT / "bench" / "sweep.py"), "--settings", str(path), "--workers", "3",
           "--cores-per-worker", "1", "--out", str(out), "--runs-dir", str(tmp_path / "runs"), "--dry-run",
           "--configfile", *map(str, configs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the typo fails, the others still ran
    records = {r["name"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(records) == {"small", "wide", "typo"}
    assert "error" in records["typo"] and any("no_such_key" in line for line in records["typo"]["error_lines"])
    small, wide = records["small"], records["wide"]
    for r in (small, wide):
        assert "error" not in r, r
        assert r["jobs"]["sft"] == 1 and r["jobs"]["rl"] == 1 and r["jobs"]["predict"] == 2 and r["jobs"]["metrics"] == 1
        assert r["datasets"] == ["synth"]
        workdir = tmp_path / "runs" / "sweep-tinysweep" / r["name"]
        assert yaml.safe_load((workdir / "overlay.yaml").read_text()) == r["overlay"]
        assert f"--directory {workdir}" in r["command"] and " -n " in r["command"]
        assert r["command"].endswith("-- results/synth/seed-0/metrics.tsv")
    assert small["overlay"] != wide["overlay"]
    assert small["overlay"] == {"sft": {"max_steps": 5, "lr": 0.01}}
    assert wide["overlay"] == {"sft": {"max_steps": 5}, "lm": {"tiny": {"hidden_size": 48}}}


def test_the_rules_find_this_interpreter_first_on_path():
    bindir = Path(sys.executable).parent
    if (bindir / "python").exists() and (bindir / "python").samefile(sys.executable):
        assert sweep.rule_path("/usr/bin") == f"{bindir}:/usr/bin"
    else:
        assert sweep.rule_path("/usr/bin") == "/usr/bin"
