"""The pipeline through `snakemake --profile profiles/slurm` on a real single-node SLURM
cluster (ci/slurm/run_pipeline_on_slurm.sh, which installs and starts it): every rule of
the DAG must run as a SLURM job; then a SLURM job that fails must be retried, say why,
and leave the outputs of finished rules alone. Needs root and apt-get; skipped otherwise, or when
SIDREC_SKIP_SLURM is set. About 4-6 minutes (a first run also installs slurm-wlm + munge)."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "ci" / "slurm" / "run_pipeline_on_slurm.sh"
RULES = {"dataset", "embed", "quantize", "sid", "base_tiny", "sft", "rl", "predict",
         "popularity", "sasrec", "metrics", "significance", "plots", "provenance"}
GPU_PARTITION_RULES = {"embed", "sft", "rl", "predict"}


def why_skip():
    if os.environ.get("SIDREC_SKIP_SLURM"):
        return "SIDREC_SKIP_SLURM is set"
    if os.geteuid() != 0:
        return "needs root: installs slurm-wlm + munge and starts a local SLURM cluster"
    if not shutil.which("apt-get"):
        return "needs apt-get (Debian/Ubuntu) to install slurm-wlm + munge"
    return None


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory):
    reason = why_skip()
    if reason:
        pytest.skip(f"real SLURM test skipped: {reason}")
    work = tmp_path_factory.mktemp("slurm") / "work"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.Popen(["bash", str(SCRIPT), str(work)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        output, _ = proc.communicate(timeout=1500)
    except subprocess.TimeoutExpired:
        # TERM lets the script's trap interrupt snakemake and stop the daemons it started.
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=180)
        pytest.fail("run_pipeline_on_slurm.sh timed out:\n" + output[-10000:])
    assert proc.returncode == 0, output[-15000:]
    return work, output


def test_every_rule_of_the_dag_ran_as_a_slurm_job(slurm_run):
    work, output = slurm_run
    report = json.loads((work / "slurm_jobs.json").read_text())
    assert set(report["dag"]) == RULES
    assert report["local"] == []  # nothing but the target rule `all` ran outside SLURM
    assert set(report["jobs"]) == RULES, output[-5000:]
    for rule, jobs in report["jobs"].items():
        job = jobs[-1]  # a retry would be a later job of the same rule
        assert Path(job["log"]).is_file(), (rule, job)  # slurm-keep-successful-logs
        assert Path(job["log"]).name == f"{job['jobid']}.log"
        assert Path(job["log"]).is_relative_to(work / ".snakemake" / "slurm_logs" / f"rule_{rule}")
        assert re.search(rf"^rule {rule}:", Path(job["log"]).read_text(), re.M)  # ran inside the job
        assert job["exit"] == 0, (rule, job)  # slurmctld: WEXITSTATUS 0
        assert job["partition"] == ("gpu" if rule in GPU_PARTITION_RULES else "cpu"), (rule, job)
    jobids = [job["jobid"] for jobs in report["jobs"].values() for job in jobs]
    assert len(set(jobids)) == len(jobids)


def test_the_slurm_run_produced_the_metrics_table(slurm_run):
    work, _ = slurm_run
    metrics = pd.read_csv(work / "results/synth/metrics.tsv", sep="\t")
    assert set(metrics.model) == {"sft", "rl", "popularity", "sasrec"}
    assert metrics.value.between(0, 1).all()


def test_a_failing_slurm_job_is_retried_named_and_leaves_finished_outputs_alone(slurm_run):
    """Step 5 of the script: a malformed row in the source's valid.csv fails `dataset`
    inside its SLURM job."""
    work, output = slurm_run
    report = json.loads((work / "slurm_fault.json").read_text())
    assert report["exit"] != 0, report
    assert len(report["dataset_jobs"]) == 2, report  # the profile's `retries: 1`
    assert report["other_rules_submitted"] == [], report  # nothing downstream started
    assert report["message_names_file_line_problem"], report  # "valid.csv:<line>: ... not a Python literal"
    assert report["checked_outputs"] >= 20 and report["changed_outputs"] == [], report
