"""How GPU rules start: the rule's `gpu` resource picks plain python, a 1-GPU
`accelerate launch` or the multi-GPU (ZeRO-2 for SFT and RL) one; a missing accelerate config
and more processes than GPUs fail with messages that say what to change."""
import shutil
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_snakemake
from sidrec.cli import check_devices



def dry_run_commands(workdir: Path, *resources: str, root: Path = ROOT):
    """Shell commands that a dry run prints, by stage module (sidrec.cli.<stage>)."""
    out = run_snakemake(workdir, "-n", "-p", "--cores", "1", "--set-resources", *resources,
                        snakefile=root / "Snakefile")
    commands = {}
    for line in out.stdout.splitlines():
        if line.startswith("Shell command:") and "sidrec.cli." in line:
            stage = line.split("sidrec.cli.", 1)[1].split()[0]
            commands[stage] = line.removeprefix("Shell command:").strip()
    return out, commands


def test_gpu_resource_chooses_the_launch_line(tmp_path):
    out, commands = dry_run_commands(tmp_path, "sft:gpu=2", "rl:gpu=2", "predict:gpu=1", "sasrec:gpu=1",
                                     "quantize:gpu=1")
    assert out.returncode == 0, out.stdout + out.stderr
    accel = ROOT / "config" / "accelerate"
    assert commands["sft"].startswith(
        f"accelerate launch --num_processes 2 --config_file {accel / 'zero2.yaml'} "
        f"--deepspeed_config_file {accel / 'zero2.json'} -m sidrec.cli.sft --device cuda ")
    assert commands["rl"].startswith(
        f"accelerate launch --num_processes 2 --config_file {accel / 'zero2.yaml'} "
        f"--deepspeed_config_file {accel / 'zero2.json'} -m sidrec.cli.rl --device cuda ")
    one_gpu = f"accelerate launch --num_processes 1 --config_file {accel / 'single_gpu.yaml'} -m"
    for stage in ("predict", "sasrec", "quantize"):
        assert commands[stage].startswith(f"{one_gpu} sidrec.cli.{stage} --device cuda "), commands[stage]
    # gpu=0: plain python on the CPU, even on a machine with a GPU.
    assert commands["embed"].startswith("python -m sidrec.cli.embed --device cpu ")
    # bench/sft_scaling.py times the rule's own command line.
    sys.path.insert(0, str(ROOT / "bench"))
    from sft_scaling import launch_prefix
    assert commands["sft"].startswith(launch_prefix(2) + " sidrec.cli.sft ")


def test_every_gpu_capable_stage_runs_on_the_cpu_by_default(tmp_path):
    out, commands = dry_run_commands(tmp_path, "sft:gpu=0")
    assert out.returncode == 0, out.stdout + out.stderr
    assert set(commands) == {"embed", "quantize", "sft", "rl", "predict", "sasrec"}
    for stage, line in commands.items():
        assert line.startswith(f"python -m sidrec.cli.{stage} --device cpu "), line


def test_a_one_device_stage_given_several_gpus_stops_before_any_job(tmp_path):
    out, _ = dry_run_commands(tmp_path, "sasrec:gpu=2")
    assert out.returncode != 0
    assert "must be 0 or 1" in out.stdout + out.stderr


def test_every_accelerate_config_the_rules_name_exists():
    accel = ROOT / "config" / "accelerate"
    for name in ("single_gpu.yaml", "multi_gpu.yaml", "zero2.yaml", "zero2.json"):
        assert (accel / name).is_file(), name


def test_missing_accelerate_config_is_named_before_any_job(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for part in ("Snakefile", "rules", "config", "workflow", "envs", "sidrec"):
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, repo / part)
    (repo / "config/accelerate/zero2.yaml").unlink()
    out, _ = dry_run_commands(tmp_path / "work", "sft:gpu=2", root=repo)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "zero2.yaml" in text and "not found" in text, text[-3000:]


@pytest.mark.parametrize("processes, gpus, fails", [(4, 1, True), (2, 2, False), (4, 0, False), (1, 0, False)])
def test_more_processes_than_gpus_is_a_clear_error(monkeypatch, processes, gpus, fails):
    import torch

    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(processes))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    device = "cuda" if gpus else "cpu"
    if fails:
        with pytest.raises(SystemExit, match=rf"launched {processes} processes on this node but it has {gpus} GPU"):
            check_devices(device)
    else:
        check_devices(device)  # enough GPUs, or CPU processes


def test_cuda_asked_for_without_a_gpu_says_what_to_change(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="gpu` resource to 0"):
        check_devices("cuda")
    check_devices("cpu")


def test_the_profiles_resubmit_no_failed_job_and_slurm_requeues_node_failures():
    """Snakemake retries every failure alike, and a bad input fails the same way every
    time: no `retries`; node failures and preemption are left to `sbatch --requeue`."""
    import dataclasses

    import snakemake_executor_plugin_slurm as slurm_plugin
    import yaml

    local = yaml.safe_load((ROOT / "profiles/local/config.yaml").read_text())
    cluster = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    assert local["retries"] == 0 and cluster["retries"] == 0
    assert cluster["slurm-requeue"] is True
    assert "requeue" in {f.name for f in dataclasses.fields(slurm_plugin.ExecutorSettings)}
