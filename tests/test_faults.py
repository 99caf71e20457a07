"""Faults: a job that fails after a config change, and kill -9 at seeded random points of
sft, quantize, predict and metrics; then what `make run` does (workflow/unlock_stale.py,
then snakemake with the Makefile's flags) must end with the outputs of an uninterrupted
run, no partial file at a final path, and no trainer left running.

On the tiny fixture (tests/tiny) with two models (sft, popularity) and metrics.tsv as the
target: one reference run, then each fault on a copy of it (copies keep mtimes and
Snakemake's metadata), so every case reruns only its stage and what follows it."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT, run_snakemake
from sidrec.lm.run import is_complete_checkpoint

sys.path.insert(0, str(ROOT / "workflow"))
import unlock_stale  # noqa: E402

# metrics.tsv and every artifact it comes from, as `make run`'s target (rule all) asks
# for them through provenance.json: an intermediate missing after a kill is rebuilt
# because a target asks for it, not only when something downstream is stale.
TARGET = ["results/synth/seed-0/metrics.tsv"] + [f"results/synth/seed-0/{f}" for f in (
    "rqvae.ckpt", "sid.json", "sft", "predictions/sft_valid.parquet", "predictions/sft_test.parquet")]
FAST = {"evaluate": {"models": ["sft", "popularity"]}}
# The Makefile's `run` flags (SNAKEMAKE_ARGS), less --cores/--configfile.
MAKE_RUN_FLAGS = ["--rerun-incomplete", "--show-failed-logs"]
SEED = 16  # of the kill points; change it to try others
# Each stage's process, found by a piece of its command line (metrics is a script rule).
MARKERS = {"quantize": "sidrec.cli.quantize", "sft": "sidrec.cli.sft", "predict": "sidrec.cli.predict",
           "metrics": "metrics.py"}
# A kill lands uniformly in [0, this] seconds after the stage's process appears (about
# its length on 2 busy cores; sft: after its first checkpoint, so the rerun resumes).
SPAN = {"quantize": 4.0, "sft": 0.5, "predict": 6.0, "metrics": 1.5}


def snakemake_args(work, configs):
    return ["--snakefile", str(ROOT / "Snakefile"), "--directory", str(work), "--cores", "2",
            "--configfile", *map(str, configs)]


def make_run(work, configs, *extra):
    """What `make run` does: unlock a lock that no live snakemake holds, then snakemake
    with the Makefile's flags."""
    args = snakemake_args(work, configs)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run([sys.executable, str(ROOT / "workflow" / "unlock_stale.py"), *args], check=True, env=env,
                   cwd=ROOT, timeout=120)
    return run_snakemake(work, "--cores", "2", *MAKE_RUN_FLAGS, *TARGET, *extra, configfiles=configs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from make_fixture import make

    work = tmp_path_factory.mktemp("faults") / "reference"
    work.mkdir()
    configs = make(work)
    fast = work / "fast.yaml"
    fast.write_text(yaml.safe_dump(FAST))
    configs = [*configs, fast]
    out = make_run(work, configs)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return work, configs


def clone(reference, dst: Path) -> Path:
    shutil.copytree(reference[0], dst, symlinks=True)  # copy2: mtimes kept, so nothing is stale
    return dst


# --------------------------------------------------------------------------- outputs

def final_outputs(work: Path) -> dict:
    """Each final output's content, as something == compares: tensors, tables, JSON."""
    from safetensors.torch import load_file

    d = work / "results" / "synth" / "seed-0"
    out = {}
    for name in ("rqvae.ckpt",):
        if (d / name).exists():
            import torch
            ckpt = torch.load(d / name, weights_only=True)  # its report holds timings: not compared
            out[name] = {"config": ckpt["config"], "loss_curve": ckpt["report"]["loss_curve"],
                         **{f"state_dict.{k}": v for k, v in ckpt["state_dict"].items()}}
    for name in ("sid.json", "sid.meta.json"):
        if (d / name).exists():
            out[name] = json.loads((d / name).read_text())
    for name in ("sft_valid", "sft_test", "popularity_valid", "popularity_test"):
        # popularity's lists are the same for every seed: beside the data, not in seed-0/
        f = (d.parent if name.startswith("popularity") else d) / "predictions" / f"{name}.parquet"
        if f.exists():
            out[name] = pd.read_parquet(f)
    if (d / "metrics.tsv").exists():
        out["metrics.tsv"] = (d / "metrics.tsv").read_text()
    if (d / "sft").exists():
        out["sft"] = load_file(d / "sft" / "model.safetensors")
    return out


def assert_same(got: dict, want: dict, what: str):
    for name, value in got.items():
        ref = want[name]
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(value, ref, obj=f"{what}: {name}")
        elif name == "sft":
            assert value.keys() == ref.keys() and all(np.array_equal(value[k], ref[k]) for k in value), \
                f"{what}: sft weights differ"
        elif name == "rqvae.ckpt":
            import torch
            for k, v in value.items():
                same = torch.equal(v, ref[k]) if isinstance(v, torch.Tensor) else v == ref[k]
                assert same, f"{what}: rqvae.ckpt[{k!r}] differs"
        else:
            assert value == ref, f"{what}: {name} differs"


def test_two_runs_from_scratch_write_byte_identical_sids_predictions_and_metrics(reference, tiny_pipeline):
    """Issue 17: same seed, same CPU, same data -> the same bytes. The session's tiny
    pipeline and this module's reference were both built from nothing, in other
    folders; they differ only in which models metrics.tsv lists."""
    a = reference[0] / "results" / "synth" / "seed-0"
    b = tiny_pipeline[0] / "results" / "synth" / "seed-0"
    for name in ("sid.json", "predictions/sft_valid.parquet", "predictions/sft_test.parquet"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for name in ("predictions/popularity_valid.parquet", "predictions/popularity_test.parquet"):
        assert (a.parent / name).read_bytes() == (b.parent / name).read_bytes(), name
    rows = (b / "metrics.tsv").read_text().splitlines()
    kept = [r for r in rows if r.split("\t")[1] in ("model", "sft", "popularity")]  # the reference's models
    assert (a / "metrics.tsv").read_text().splitlines() == kept


# --------------------------------------------------------------------------- processes

def processes(work: Path, marker: str) -> list[int]:
    """Pids of live processes whose command line holds `marker` and whose cwd is `work`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = Path(os.readlink(proc / "cwd"))
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmd and cwd == work and state != "Z" and "/bin/bash" not in cmd.split(" ")[0]:
            found.append(int(proc.name))
    return found


def wait_for(condition, timeout, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(step)
    return False


# --------------------------------------------------------------------------- part 1

def test_a_failed_job_after_a_config_change_is_rebuilt_with_everything_below_it(reference, tmp_path):
    """Issue 16: after an SFT setting changed and the sft job failed, the next run said
    "Nothing to be done" and kept the old metrics. Each job's params now carry its
    lineage, so predict and metrics are stale by their own params, and sft is rebuilt."""
    work = clone(reference, tmp_path / "w")
    configs = [*reference[1], tmp_path / "lr.yaml"]
    configs[-1].write_text(yaml.safe_dump({"sft": {"lr": 0.002}}))
    d = work / "results" / "synth" / "seed-0"
    before = {f: (d / f).stat().st_mtime_ns for f in ("predictions/sft_test.parquet", "metrics.tsv")}
    # The sft job fails: its scratch folder is a file (prepare_scratch cannot clear it).
    shutil.rmtree(d / ".scratch", ignore_errors=True)
    (d / ".scratch").mkdir()
    (d / ".scratch" / "sft").write_text("in the way\n")
    failed = make_run(work, configs)
    assert failed.returncode != 0
    assert not (d / "sft").exists()
    # --show-failed-logs: the job's error reaches the terminal, not only its log file.
    assert "NotADirectoryError" in failed.stdout + failed.stderr, failed.stderr[-3000:]

    (d / ".scratch" / "sft").unlink()
    again = make_run(work, configs)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "Nothing to be done" not in again.stdout + again.stderr
    assert json.loads((d / "sft" / "sft_report.json").read_text())["config"]["lr"] == 0.002
    for f, mtime in before.items():
        assert (d / f).stat().st_mtime_ns > mtime, f"{f} was not rebuilt"
    assert "Nothing to be done" in run_snakemake(work, "-n", "--cores", "2", *TARGET,
                                                 configfiles=configs).stdout


# --------------------------------------------------------------------------- part 7

KILLS = [(stage, random.Random(SEED + i).uniform(0, SPAN[stage])) for i, stage in enumerate(MARKERS)]
# What each fault did: the rows of bench/RESULTS.md (printed; run with -s to see them).
OUTCOMES = []


@pytest.mark.parametrize("stage, delay", KILLS, ids=[f"{s}-{d:.2f}s" for s, d in KILLS])
def test_kill_9_of_snakemake_during_a_stage_then_make_run_ends_as_an_uninterrupted_run(reference, tmp_path,
                                                                                       stage, delay):
    work = clone(reference, tmp_path / "w")
    configs = reference[1]
    want = final_outputs(reference[0])
    d = work / "results" / "synth" / "seed-0"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    run = subprocess.Popen([sys.executable, "-m", "snakemake", *snakemake_args(work, configs), *MAKE_RUN_FLAGS,
                            "--forcerun", stage, *TARGET], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_for(lambda: processes(work, MARKERS[stage]), 120), f"{stage} never started"
        if stage == "sft":  # a kill after its first checkpoint: the rerun resumes from it
            assert wait_for(lambda: is_complete_checkpoint(d / ".scratch" / "sft" / "checkpoint-10"), 120)
        time.sleep(delay)
        running = bool(processes(work, MARKERS[stage]))
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        # No trainer outlives the workflow (sidrec/cli/lifeline.py); script jobs die with it too.
        orphans_gone = wait_for(lambda: not processes(work, "sidrec.cli"), 10, step=0.2)
        assert orphans_gone, f"orphaned stage processes: {processes(work, 'sidrec.cli')}"
        # Nothing partial at a final path: what is there is what the uninterrupted run wrote.
        assert_same(final_outputs(work), want, f"after kill -9 during {stage}")
        locked = (work / ".snakemake" / "locks").is_dir() and any((work / ".snakemake" / "locks").iterdir())
        scratch = d / ".scratch" / "sft"
        left = sorted(int(c.name.split("-")[1]) for c in scratch.glob("checkpoint-*") if is_complete_checkpoint(c))

        out = make_run(work, configs)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        got = final_outputs(work)
        assert got.keys() == want.keys()
        assert_same(got, want, f"rerun after kill -9 during {stage}")
        # A kill that left a whole checkpoint is resumed from it, and says so.
        resumed = json.loads((d / "sft" / "sft_report.json").read_text())["resumed"]
        if stage == "sft" and left:
            assert resumed and resumed["from_step"] == left[-1] and resumed["reproduces_uninterrupted"] is True
        else:
            assert resumed is None
        OUTCOMES.append(f"| kill -9 of snakemake {delay:.2f} s into {stage} (stage still running: {running}) | "
                        f"lock left: {locked}; no orphan; rerun rc 0; outputs equal to the uninterrupted run"
                        + (f"; sft resumed from step {resumed['from_step']}, weights bit-identical" if resumed else "")
                        + " |")
        print(OUTCOMES[-1])
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)


# --------------------------------------------------------------------------- pieces

def _fake_snakemake(tmp_path, work):
    """A process that looks like a snakemake running in `work` (argv[1] named snakemake)."""
    script = tmp_path / "bin" / "snakemake"
    script.parent.mkdir()
    script.write_text("import time\ntime.sleep(60)\n")
    return subprocess.Popen([sys.executable, str(script), "--directory", str(work)])


def test_a_lock_is_lifted_only_when_no_snakemake_runs_in_the_directory(tmp_path):
    work = tmp_path / "w"
    (work / ".snakemake" / "locks").mkdir(parents=True)
    lock = work / ".snakemake" / "locks" / "0.input.lock"
    lock.write_text("x\n")
    live = _fake_snakemake(tmp_path, work)
    try:
        assert wait_for(lambda: unlock_stale.live_snakemakes(work.resolve()) == [live.pid], 5)
        assert unlock_stale.main(["--directory", str(work)]) == 0
        assert lock.exists()  # another run holds it
    finally:
        live.kill()
        live.wait()
    assert unlock_stale.live_snakemakes(work.resolve()) == []
    assert unlock_stale._directory(["-d", "w"], tmp_path) == work.resolve()


def _tied_child(env, wrapper=()):
    code = "from sidrec.cli import lifeline; lifeline.hold(); import time; time.sleep(60)"
    return subprocess.Popen([*wrapper, sys.executable, "-c", code] if not wrapper else
                            [*wrapper, f"{sys.executable} -c '{code}'; true"], env=env, cwd=ROOT)


def test_a_stage_process_stops_when_the_workflow_or_its_parent_dies(tmp_path):
    from sidrec.cli import lifeline

    # The workflow process dies, the child's own parent (a shell, as in a job) lives on.
    workflow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    env = {**os.environ, lifeline.ENV: lifeline.token(workflow.pid)}
    shell = _tied_child(env, wrapper=("/bin/bash", "-c"))
    assert wait_for(lambda: processes(ROOT, "lifeline.hold"), 10)
    time.sleep(1)
    workflow.kill()
    workflow.wait()
    assert wait_for(lambda: not processes(ROOT, "lifeline.hold"), 10)
    shell.wait(timeout=10)

    # The parent itself dies (kill -9 of the job's shell): PR_SET_PDEATHSIG.
    env = {k: v for k, v in os.environ.items() if k != lifeline.ENV}
    shell = _tied_child(env, wrapper=("/bin/bash", "-c"))
    assert wait_for(lambda: processes(ROOT, "lifeline.hold"), 10)
    time.sleep(1)
    shell.kill()
    shell.wait()
    assert wait_for(lambda: not processes(ROOT, "lifeline.hold"), 10)
