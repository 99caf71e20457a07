"""Shared test helpers: the repository root, running the real Snakefile, one torch thread."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "tiny"
sys.path.insert(0, str(TINY))


def run_snakemake(workdir: Path, *args, configfiles=(), cwd=ROOT, timeout=900, snakefile=ROOT / "Snakefile"):
    """`snakemake --snakefile ... --directory workdir [--configfile ...] args`, with this
    venv's bin first on PATH (the rules start `python -m sidrec...`)."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(workdir)]
    if configfiles:
        cmd += ["--configfile", *map(str, configfiles)]
    cmd += list(map(str, args))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


@pytest.fixture
def snakemake():
    return run_snakemake


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """(work folder, config files) of one full run of the Snakefile on the tiny fixture
    (tests/tiny), built once per session for every test file that reads its results."""
    from make_fixture import make

    work = tmp_path_factory.mktemp("pipeline")
    configs = make(work)
    out = run_snakemake(work, "--cores", "2", configfiles=configs)
    logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted((work / "results").rglob("*.log")))
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-5000:] + logs
    return work, configs


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module: tiny matrices gain nothing from threads, and on
    a busy 2-core machine torch's threads wait on each other (a 600x8 matmul took 15 ms
    with 2 threads, 0.01 ms with 1). Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
