"""End to end: the real Snakefile on a small synthetic dataset in MiniOneRec's format
(tests/tiny: its config and fixture, shared with the SLURM CI), every stage from item text
to metrics.tsv; then only-stale reruns, config changes and code edits."""
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT, run_snakemake
from make_fixture import N_ITEMS, N_USERS


@pytest.fixture(scope="module")
def built(tiny_pipeline):
    return tiny_pipeline  # conftest.py: one run per session, shared with the report's tests


def dry_run(built, *args, extra=()):
    work, configs = built
    return run_snakemake(work, "-n", "--cores", "2", *args, configfiles=[*configs, *extra])


def test_metrics_table_has_every_model_split_metric_and_k(built):
    metrics = pd.read_csv(built[0] / "results/synth/seed-0/metrics.tsv", sep="\t")
    assert list(metrics.columns) == ["dataset", "model", "split", "metric", "k", "value", "n"]
    assert set(metrics.model) == {"sft", "rl", "popularity", "sasrec"}
    faults = metrics[metrics.metric.isin(["invalid", "duplicate"])]
    assert len(faults) == 4 * 2 * 2 and (faults.value == 0).all() and set(faults.k) == {10}
    metrics = metrics.drop(faults.index)
    assert len(metrics) == 4 * 2 * 2 * 3
    assert metrics.value.between(0, 1).all()
    assert set(metrics.n) == {N_USERS}
    hr = metrics[metrics.metric == "HR"].set_index(["model", "split", "k"]).value
    for model in ("sft", "rl", "popularity", "sasrec"):
        for split in ("valid", "test"):
            assert hr[model, split, 1] <= hr[model, split, 5] <= hr[model, split, 10]


def test_sids_are_unique_and_predictions_are_catalogue_items(built):
    sids = json.loads((built[0] / "results/synth/seed-0/sid.json").read_text())
    assert len(sids) == N_ITEMS and len({tuple(v) for v in sids.values()}) == N_ITEMS
    for model in ("sft", "rl"):
        for split in ("valid", "test"):
            preds = pd.read_parquet(built[0] / f"results/synth/seed-0/predictions/{model}_{split}.parquet")
            ranked = np.stack(preds["ranked"].to_numpy())
            assert ranked.shape == (N_USERS, 10)
            assert ((ranked >= 0) & (ranked < N_ITEMS)).all()
            assert all(len(set(row)) == len(row) for row in ranked)
            scores = np.stack(preds["scores"].to_numpy())
            assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


@pytest.mark.parametrize("lm", ["sft", "rl"])
def test_lm_folders_load_as_plain_hf_models(built, lm):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(built[0] / f"results/synth/seed-0/{lm}")
    tok = AutoTokenizer.from_pretrained(built[0] / f"results/synth/seed-0/{lm}")
    assert tok.convert_tokens_to_ids("<a_0>") != tok.unk_token_id
    assert model.generation_config.do_sample is False


def test_rl_report_says_which_step_was_kept_and_how_training_went(built):
    report = json.loads((built[0] / "results/synth/seed-0/rl/rl_report.json").read_text())
    assert report["steps"] == report["planned_steps"] > 0
    assert report["valid"][0]["step"] == 0  # the SFT model is the step to beat
    best = max(e["valid_ndcg@10"] for e in report["valid"])
    assert report["selected_valid_ndcg"] == best
    assert 0 <= report["zero_advantage_fraction"] <= 1
    assert report["log"] and all({"step", "reward", "frac_reward_zero_std", "kl"} <= set(h) for h in report["log"])


# Rules that read the metrics (rules/report.smk): stale whenever metrics.tsv is.
REPORT = {"significance", "plots", "provenance", "summary"}


def write_overlay(built, name, overlay: dict) -> Path:
    path = built[0] / name
    path.write_text(yaml.safe_dump(overlay))
    return path


def planned_jobs(out) -> dict:
    """rule -> reason of each job in a dry run's plan."""
    jobs, rule = {}, None
    for line in (out.stdout + out.stderr).splitlines():
        if line.startswith("rule ") and line.rstrip().endswith(":"):
            rule = line[5:].rstrip(":").strip()
            jobs.setdefault(rule, "")
        elif rule and line.strip().startswith("reason:"):
            jobs[rule] = line.strip()[len("reason:"):].strip()
    jobs.pop("all", None)
    return jobs


def test_second_run_does_nothing_and_a_param_change_reruns_only_its_dependents(built):
    again = dry_run(built)
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr
    changed = dry_run(built, extra=[write_overlay(built, "beam.yaml", {"evaluate": {"beam_width": 12}})])
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert set(planned_jobs(changed)) == {"predict", "metrics"} | REPORT
    rl = dry_run(built, extra=[write_overlay(built, "rl.yaml", {"rl": {"beta": 0.01}})])
    assert set(planned_jobs(rl)) == {"rl", "predict", "metrics"} | REPORT
    models = dry_run(built, extra=[write_overlay(built, "models.yaml", {"evaluate": {"models": ["sft", "sasrec"]}})])
    assert set(planned_jobs(models)) == {"metrics"} | REPORT  # the list of models changes no predictions


def planned_outputs(out) -> list[str]:
    """The output files of every planned job, from a dry run."""
    return [f.strip() for line in (out.stdout + out.stderr).splitlines() if line.strip().startswith("output:")
            for f in line.split(":", 1)[1].split(",")]


def test_adding_a_seed_runs_only_that_seeds_jobs(built):
    out = dry_run(built, "--config", "seeds=[0,1]")
    assert out.returncode == 0, out.stdout + out.stderr
    # the seeded stages, once each for seed 1 (SASRec once per grid point); data,
    # embeddings and popularity are shared by the seeds and stay as they are
    assert set(planned_jobs(out)) == {"item_vectors", "quantize", "sid", "base_tiny", "sft", "rl", "predict",
                                      "sasrec", "sasrec_select", "metrics"} | REPORT
    counts = job_counts(out)
    assert counts["sft"] == 1 and counts["predict"] == 2 and counts["sasrec"] == 2
    outputs = [f for f in planned_outputs(out) if not f.startswith("results/summary")]
    assert outputs and all("seed-1" in f for f in outputs), outputs


def test_the_summary_gives_each_metric_over_seeds(built):
    summary = pd.read_csv(built[0] / "results/summary.tsv", sep="\t")
    per_seed = pd.read_csv(built[0] / "results/summary_seeds.tsv", sep="\t")
    metrics = pd.read_csv(built[0] / "results/synth/seed-0/metrics.tsv", sep="\t")
    assert list(summary.columns) == ["dataset", "model", "split", "metric", "k", "mean", "std", "n_seeds", "per_seed"]
    assert len(summary) == len(metrics) == len(per_seed) and (per_seed.seed == 0).all()
    assert (summary.n_seeds == 1).all() and summary["std"].isna().all()  # one seed: no spread
    keys = ["dataset", "model", "split", "metric", "k"]
    joined = summary.merge(metrics, on=keys)
    np.testing.assert_allclose(joined["mean"], joined["value"], atol=1e-6)


def job_counts(out) -> dict:
    """rule -> number of jobs, from a dry run's "Job stats" table."""
    import re

    table = re.search(r"Job stats:\n(.*?)\ntotal", out.stdout + out.stderr, re.S)
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table.group(1), re.M)} if table else {}


def test_the_sasrec_grid_trains_each_point_once_and_selection_reads_valid_only(built):
    selection = json.loads((built[0] / "results/synth/seed-0/sasrec_selection.json").read_text())
    assert [c["name"] for c in selection["candidates"]] == ["dropout0.1", "dropout0.3"]
    assert [c["config"]["dropout"] for c in selection["candidates"]] == [0.1, 0.3]
    best = max(selection["candidates"], key=lambda c: c["valid_ndcg@10"])
    assert selection["selected"] == best["name"]
    assert (built[0] / "results/synth/seed-0/sasrec.ckpt").read_bytes() == \
        (built[0] / f"results/synth/seed-0/sasrec_grid/{best['name']}.ckpt").read_bytes()
    # a new value trains only the new point; the selection and what reads it rerun (with
    # quantizer.input both, the SIDs read the selected SASRec: the LM chain too)
    more = dry_run(built, extra=[write_overlay(built, "grid.yaml", {"baselines": {"sasrec_grid": {"dropout": [0.1, 0.3, 0.5]}}})])
    assert more.returncode == 0, more.stdout + more.stderr
    assert set(planned_jobs(more)) == {"sasrec"} | downstream({"sasrec"})
    assert job_counts(more)["sasrec"] == 1 and "sasrec_grid/dropout0.5.ckpt" in more.stdout
    # changing what every point shares retrains every point
    shared = dry_run(built, extra=[write_overlay(built, "shared.yaml", {"baselines": {"sasrec": {"hidden": 8}}})])
    assert job_counts(shared)["sasrec"] == 2


@pytest.mark.parametrize("grid, named", [
    ({"dropout": [0.1, 2.0]}, "baselines.sasrec_grid.dropout"),
    ({"hidden": [16, "wide"]}, "baselines.sasrec_grid.hidden"),
    ({"seed": [1, 2]}, "sasrec_grid"),
    ({"dropout": []}, "sasrec_grid"),
    ({"dropout": [0.1, 0.1]}, "baselines.sasrec_grid.dropout"),
])
def test_a_bad_sasrec_grid_stops_before_any_job(built, grid, named):
    bad = write_overlay(built, "bad_grid.yaml", {"baselines": {"sasrec_grid": grid}})
    out = dry_run(built, extra=[bad])
    assert out.returncode != 0
    assert named in out.stdout + out.stderr, out.stdout[-2000:] + out.stderr[-2000:]


# rule -> the rules that consume its outputs (the tiny config's DAG, with config.yaml's
# quantizer.input: both: the SIDs come from item_vectors, text beside SASRec's item
# embeddings); provenance and the plots read every job's benchmark file as well.
CONSUMERS = {"dataset": {"embed", "base_tiny", "sft", "rl", "predict", "popularity", "sasrec", "sasrec_select",
                         "metrics"},
             "embed": {"item_vectors"}, "item_vectors": {"quantize", "sid"}, "quantize": {"sid"},
             "sid": {"sft", "rl", "predict"},
             "base_tiny": {"sft"}, "sft": {"rl", "predict"}, "rl": {"predict"}, "predict": {"metrics"},
             "popularity": {"metrics"}, "sasrec": {"sasrec_select"},
             "sasrec_select": {"metrics", "item_vectors"},
             "metrics": {"significance", "summary"}, "summary": set(),
             "significance": {"plots"}, "plots": set(), "provenance": set()}
for _rule in set(CONSUMERS) - {"plots", "provenance", "summary"}:
    CONSUMERS[_rule] |= {"plots", "provenance"}


def downstream(rules: set) -> set:
    out, todo = set(), list(rules)
    while todo:
        for nxt in CONSUMERS[todo.pop()]:
            if nxt not in out:
                out.add(nxt)
                todo.append(nxt)
    return out


@pytest.mark.parametrize("overlay, changed", [
    ({"sft": {"epochs": 2}}, {"sft"}),
    ({"quantizer": {"epochs": 30}}, {"quantize"}),
    ({"datasets": {"synth": {"source": "minionerec", "max_history": 5}}}, {"dataset"}),
    ({"baselines": {"sasrec": {"lr": 0.01}}}, {"sasrec"}),
])
def test_a_changed_setting_reruns_exactly_its_stage_and_what_reads_it(built, overlay, changed):
    out = dry_run(built, extra=[write_overlay(built, "setting.yaml", overlay)])
    assert out.returncode == 0, out.stdout + out.stderr
    assert set(planned_jobs(out)) == changed | downstream(changed)


@pytest.mark.parametrize("module, importers", [
    ("sidrec/decode/beam.py", {"predict", "rl"}),
    ("sidrec/rl/rewards.py", {"rl"}),
    ("sidrec/baselines/sasrec.py", {"sasrec", "sasrec_select", "item_vectors"}),
    ("sidrec/lm/prompts.py", {"base_tiny", "sft", "rl", "predict"}),
    ("sidrec/quantize/rqvae.py", {"quantize", "sid", "item_vectors"}),
    ("sidrec/metrics.py", {"sasrec", "sasrec_select", "item_vectors", "popularity", "predict", "rl", "metrics",
                           "significance", "plots"}),
    ("sidrec/data/minionerec.py", {"dataset"}),
])
def test_editing_a_module_makes_exactly_the_rules_that_import_it_stale(built, module, importers):
    path = ROOT / module
    original, before = path.read_bytes(), path.stat()
    try:
        # A real edit: Snakemake ignores a newer mtime when a small file's checksum is unchanged.
        path.write_bytes(original + b"\n# edited by test_pipeline\n")
        jobs = planned_jobs(dry_run(built))
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    # The importers and what they feed rerun, nothing else...
    assert set(jobs) == importers | downstream(importers), jobs
    # ...and a job gives the edited module as its reason exactly when it imports it (a job
    # downstream of another stale one gives that instead: Snakemake names one reason).
    named = {rule for rule, reason in jobs.items() if module in reason}
    assert importers - downstream(importers) <= named <= importers, jobs


def test_edited_source_data_makes_the_dataset_and_everything_after_it_stale(built):
    source = built[0] / "source" / "test.csv"
    original = source.read_text()
    try:
        source.write_text(original.replace("U0,", "U0x,", 1))  # one user renamed
        jobs = planned_jobs(dry_run(built))
        assert {"dataset", "embed", "sft", "metrics"} <= set(jobs), jobs
    finally:
        source.write_text(original)


def test_a_dataset_sft_override_reruns_its_sft_and_a_misspelt_one_is_named(built):
    override = write_overlay(built, "override.yaml", {"datasets": {"synth": {"source": "minionerec", "sft": {"lr": 0.001}}}})
    out = dry_run(built, extra=[override])
    assert out.returncode == 0, out.stdout + out.stderr
    assert set(planned_jobs(out)) == {"sft", "rl", "predict", "metrics"} | REPORT

    misspelt = write_overlay(built, "misspelt.yaml",
                             {"datasets": {"synth": {"source": "minionerec", "sft": {"learning_rate": 0.001}}}})
    out = dry_run(built, extra=[misspelt])
    assert out.returncode != 0
    assert "datasets.synth.sft" in out.stdout + out.stderr and "learning_rate" in out.stdout + out.stderr


def test_titles_in_the_history_rerun_sft_onwards_and_off_changes_nothing(built):
    """sft.history_title_words: on, SFT and what reads its model rerun (the format travels
    in the model folder, so predict and RL need no setting of their own); at 0 the key
    stays out of sft's settings, so a pipeline built before it existed stays up to date."""
    off = write_overlay(built, "titles_off.yaml", {"sft": {"history_title_words": 0}})
    out = dry_run(built, extra=[off])
    assert out.returncode == 0, out.stdout + out.stderr
    assert planned_jobs(out) == {}, out.stdout[-2000:]
    out = dry_run(built, "-p", "--forcerun", "sft", extra=[off])
    assert "history_title_words" not in out.stdout.split("rule sft:")[1].split("rule ")[0]
    on = write_overlay(built, "titles_on.yaml", {"sft": {"history_title_words": 3}})
    out = dry_run(built, "-p", extra=[on])
    assert out.returncode == 0, out.stdout + out.stderr
    assert set(planned_jobs(out)) == {"sft", "rl", "predict", "metrics"} | REPORT
    assert '"history_title_words": 3' in out.stdout.split("rule sft:")[1].split("rule ")[0]
    bad = write_overlay(built, "titles_bad.yaml", {"sft": {"history_title_words": -1}})
    out = dry_run(built, extra=[bad])
    assert out.returncode != 0 and "history_title_words" in out.stdout + out.stderr


@pytest.mark.parametrize("section, override, named", [
    ("sft", {"epochs": -3}, "datasets.synth.sft.epochs"),
    ("sft", {"lr": "fast"}, "datasets.synth.sft.lr"),
    ("rl", {"num_generations": 1}, "datasets.synth.rl.num_generations"),
    ("rl", {"rewards": {"ndcg": 1.0}}, "datasets.synth.rl.rewards"),
    ("rl", {"betta": 0.1}, "datasets.synth.rl"),
])
def test_a_dataset_override_of_the_wrong_key_type_or_range_stops_before_any_job(built, section, override, named):
    bad = write_overlay(built, "bad_override.yaml", {"datasets": {"synth": {"source": "minionerec", section: override}}})
    out = dry_run(built, extra=[bad])
    assert out.returncode != 0
    assert named in out.stdout + out.stderr, out.stdout[-2000:] + out.stderr[-2000:]


def test_a_relative_dataset_path_is_read_from_the_repository_root(built, tmp_path):
    """Config paths hold from any working directory: relative ones start at the repo root."""
    work, configs = built
    relative = os.path.relpath(work / "source", ROOT)
    overlay = write_overlay(built, "relative.yaml", {"datasets": {"synth": {"source": "minionerec", "path": relative}}})
    out = run_snakemake(tmp_path, "-n", "-p", "--cores", "1", configfiles=[*configs, overlay])
    assert out.returncode == 0, out.stdout + out.stderr
    inputs = next(line for line in out.stdout.splitlines() if "valid.csv" in line)  # the dataset rule's
    assert f" {work / 'source' / 'valid.csv'}," in inputs + ",", inputs
