"""End to end: the real Snakefile on a small synthetic dataset in MiniOneRec's format,
tiny settings, every stage from item text to metrics.tsv; then only-stale reruns."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
N_ITEMS = 60
GENRES = ["drill", "glove", "tape", "valve", "sensor", "clamp"]


def write_fixture(folder: Path) -> None:
    """Users walk the catalogue in steps of one (item i is followed by i+1), so the next
    item is learnable; the valid/test rows are each user's last two steps."""
    folder.mkdir(parents=True)
    items = {str(i): {"title": f"{GENRES[i % len(GENRES)]} model {i}", "brand": f"brand{i % 4}",
                      "categories": f"Industrial, {GENRES[i % len(GENRES)]}", "description": ""}
             for i in range(N_ITEMS)}
    (folder / "Synth.item.json").write_text(json.dumps(items))
    rng = np.random.default_rng(0)
    valid, test = [], []
    for u in range(40):
        start = int(rng.integers(0, N_ITEMS))
        seq = [(start + j) % N_ITEMS for j in range(int(rng.integers(5, 9)))]
        for rows, cut in ((valid, len(seq) - 1), (test, len(seq))):
            hist, target = seq[:cut - 1][-10:], seq[cut - 1]
            rows.append({"user_id": f"U{u}", "history_item_title": str([items[str(h)]["title"] for h in hist]),
                         "item_title": items[str(target)]["title"], "history_item_id": str(hist),
                         "item_id": target, "history_item_sid": "[]", "item_sid": ""})
    pd.DataFrame(valid).to_csv(folder / "valid.csv", index=False)
    pd.DataFrame(test).to_csv(folder / "test.csv", index=False)


CONFIG = {
    "run": ["synth"],
    "datasets": {"synth": {"source": "minionerec", "path": None, "max_history": 10}},
    "quantizer": {"levels": 2, "codebook_size": 16, "latent_dim": 8, "hidden_dims": [64, 32],
                  "epochs": 40, "kmeans_iters": 10},
    "lm": {"base": "tiny", "tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2,
                                    "intermediate_size": 64, "vocab_size": 400}},
    "sft": {"max_steps": 30, "batch_size": 16, "eval_steps": 10, "lr": 0.003, "max_valid_samples": 32},
    "evaluate": {"ks": [1, 5, 10], "beam_width": 10},
    "baselines": {"sasrec": {"hidden": 16, "max_epochs": 3, "patience": 2}},
}


def snakemake(workdir: Path, *args):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
           "--cores", "2", *args]
    env = {**__import__("os").environ, "PATH": f"{Path(sys.executable).parent}:" + __import__("os").environ["PATH"]}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline")
    write_fixture(work / "source")
    config = json.loads(json.dumps(CONFIG))
    config["datasets"]["synth"]["path"] = str(work / "source")
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(work)
    logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted((work / "results").rglob("*.log")))
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-5000:] + logs
    return work


def test_metrics_table_has_every_model_split_metric_and_k(built):
    metrics = pd.read_csv(built / "results/synth/metrics.tsv", sep="\t")
    assert list(metrics.columns) == ["dataset", "model", "split", "metric", "k", "value", "n"]
    assert set(metrics.model) == {"sft", "popularity", "sasrec"}
    assert len(metrics) == 3 * 2 * 2 * 3
    assert metrics.value.between(0, 1).all()
    assert set(metrics.n) == {40}
    hr = metrics[metrics.metric == "HR"].set_index(["model", "split", "k"]).value
    for model in ("sft", "popularity", "sasrec"):
        for split in ("valid", "test"):
            assert hr[model, split, 1] <= hr[model, split, 5] <= hr[model, split, 10]


def test_sids_are_unique_and_predictions_are_catalogue_items(built):
    sids = json.loads((built / "results/synth/sid.json").read_text())
    assert len(sids) == N_ITEMS and len({tuple(v) for v in sids.values()}) == N_ITEMS
    for split in ("valid", "test"):
        preds = pd.read_parquet(built / f"results/synth/predictions/sft_{split}.parquet")
        ranked = np.stack(preds["ranked"].to_numpy())
        assert ranked.shape == (40, 10)
        assert ((ranked >= 0) & (ranked < N_ITEMS)).all()
        assert all(len(set(row)) == len(row) for row in ranked)
        scores = np.stack(preds["scores"].to_numpy())
        assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_sft_folder_loads_as_a_plain_hf_model(built):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(built / "results/synth/sft")
    tok = AutoTokenizer.from_pretrained(built / "results/synth/sft")
    assert tok.convert_tokens_to_ids("<a_0>") != tok.unk_token_id
    assert model.generation_config.do_sample is False


def test_second_run_does_nothing_and_a_param_change_reruns_only_its_dependents(built):
    again = snakemake(built, "-n")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr
    config = yaml.safe_load((built / "config.yaml").read_text())
    config["evaluate"]["beam_width"] = 12
    (built / "changed.yaml").write_text(yaml.safe_dump(config))
    changed = snakemake(built, "-n", "--configfile", str(built / "changed.yaml"))
    text = changed.stdout + changed.stderr
    assert changed.returncode == 0, text
    assert "predict_sft" in text and "metrics" in text
    for upstream in ("rule sft", "rule quantize", "rule embed", "rule sasrec"):
        assert upstream not in text, text


def test_edited_source_data_makes_the_dataset_and_everything_after_it_stale(built):
    source = built / "source" / "test.csv"
    original = source.read_text()
    try:
        source.write_text(original.replace("U0,", "U0x,", 1))  # one user renamed
        out = snakemake(built, "-n")
        text = out.stdout + out.stderr
        for rule in ("rule dataset:", "rule embed:", "rule sft:", "rule metrics:"):
            assert rule in text, text[-3000:]
    finally:
        source.write_text(original)


def test_a_dataset_sft_override_reruns_its_sft_and_a_misspelt_one_is_named(built):
    config = yaml.safe_load((built / "config.yaml").read_text())
    config["datasets"]["synth"]["sft"] = {"lr": 0.001}
    (built / "override.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(built, "-n", "--configfile", str(built / "override.yaml"))
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "rule sft:" in text and "rule predict_sft:" in text
    for upstream in ("rule dataset:", "rule quantize:", "rule sasrec:"):
        assert upstream not in text, text

    config["datasets"]["synth"]["sft"] = {"learning_rate": 0.001}
    (built / "misspelt.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(built, "-n", "--configfile", str(built / "misspelt.yaml"))
    assert out.returncode != 0
    assert "datasets.synth.sft" in out.stdout + out.stderr and "learning_rate" in out.stdout + out.stderr
