"""Run the pipeline's stages for one dataset on a GPU machine without Snakemake, with
the same commands the rules run (`python -m sidrec.cli.*` for the GPU stages, the same
library calls as workflow/scripts/ for the rest), timing every stage.

Used through the device tool, where Snakemake is not installed; the config is resolved
(schema defaults filled) here first:

    python bench/resolve_config.py config/gpu.yaml > .carry/gpu.json
    python bench/gpu_pipeline.py --config .carry/gpu.json --dataset Industrial_and_Scientific \
        --work /tmp/run --out $OUT

Writes metrics.tsv, predictions, the SFT report and a summary (stage seconds) to --out.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="resolved config as JSON")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--work", required=True, help="scratch folder for artifacts")
    ap.add_argument("--out", required=True, help="where the small results are copied")
    ap.add_argument("--embeddings", help="a precomputed embeddings.npy (skips the embed stage)")
    ap.add_argument("--no-baselines", action="store_true", help="skip popularity and SASRec")
    args = ap.parse_args()
    config = json.loads(Path(args.config).read_text())
    work, out = Path(args.work) / args.dataset, Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    def stage(name, fn):
        start = time.perf_counter()
        fn()
        seconds[name] = round(time.perf_counter() - start, 2)
        print(f"== {name}: {seconds[name]} s", flush=True)

    def cli(module, *argv):
        subprocess.run([sys.executable, "-m", f"sidrec.cli.{module}", *map(str, argv)], check=True)

    from sidrec.data import load_source
    from sidrec.data.tables import read_dataset, write_dataset
    from sidrec.evaluate import metrics_table, predictions_frame, write_metrics, write_predictions
    from sidrec.tokenize import build_sids, fit_quantizer

    spec = dict(config["datasets"][args.dataset])
    sft_params = {**config["sft"], **(spec.pop("sft", None) or {})}  # as rules/common.smk sft_params
    data = work / "data"
    k = max(config["evaluate"]["ks"])

    def dataset():
        source = spec.pop("source")
        write_dataset(load_source(source, **spec), data)

    stage("dataset", dataset)
    if args.embeddings:
        shutil.copy(args.embeddings, work / "embeddings.npy")
    else:
        stage("embed", lambda: cli("embed", "--items", data / "items.parquet", "--out", work / "embeddings.npy",
                                   "--params", json.dumps(config["encoder"])))
    stage("quantize", lambda: fit_quantizer(work / "embeddings.npy", work / "rqvae.ckpt", config["quantizer"]))
    stage("sid", lambda: build_sids(work / "rqvae.ckpt", work / "embeddings.npy", work / "sid.json",
                                    work / "sid.meta.json", codebook_size=config["quantizer"]["codebook_size"]))
    base = config["lm"]["base"]
    if base == "tiny":
        from sidrec.data.tables import read_items
        from sidrec.lm.base import build_tiny
        from sidrec.lm.prompts import tokenizer_corpus
        base = work / "models/tiny"
        titles = read_items(data / "items.parquet")["title"].tolist()
        stage("base_tiny", lambda: build_tiny(base, tokenizer_corpus(titles), config["lm"]["tiny"]))
    elif base == "smollm2-135m":
        from sidrec.lm.base import build_smollm2
        base = Path(args.work) / "models/smollm2-135m"
        if not base.exists():
            stage("base_smollm2", lambda: build_smollm2(base))
    stage("sft", lambda: cli("sft", "--base", base, "--data", data / "items.parquet", "--sid", work / "sid.json",
                             "--out", work / "sft", "--scratch", work / ".scratch/sft",
                             "--params", json.dumps(sft_params)))
    preds = work / "predictions"
    stage("predict_sft", lambda: cli("predict", "--model", work / "sft", "--data", data / "items.parquet",
                                     "--sid", work / "sid.json", "--out-valid", preds / "sft_valid.parquet",
                                     "--out-test", preds / "sft_test.parquet",
                                     "--params", json.dumps(config["evaluate"])))

    def baselines():
        import torch
        from sidrec.baselines.popularity import fit_popularity, rank_popularity
        from sidrec.baselines.sasrec import SASRecConfig, rank_sasrec, train_sasrec
        ds = read_dataset(data)
        counts = fit_popularity(ds.train, ds.n_items)
        sas = SASRecConfig(**config["baselines"]["sasrec"], max_len=spec.get("max_history", 20),
                           device="cuda" if torch.cuda.is_available() else "cpu")
        model, _ = train_sasrec(ds.train, ds.valid, ds.n_items, sas)
        for split in ("valid", "test"):
            samples = ds.split(split)
            ranked = rank_popularity(counts, len(samples), k)
            write_predictions(predictions_frame(samples, ranked, counts[ranked].astype("float32")),
                              preds / f"popularity_{split}.parquet")
            ranked, scores = rank_sasrec(model, samples, k)
            write_predictions(predictions_frame(samples, ranked, scores), preds / f"sasrec_{split}.parquet")

    if not args.no_baselines:
        stage("baselines", baselines)
    stage("metrics", lambda: write_metrics(metrics_table(args.dataset, sorted(preds.glob("*.parquet")),
                                                         config["evaluate"]["ks"]), work / "metrics.tsv"))
    for name in ("metrics.tsv", "sid.meta.json", "sft/sft_report.json"):
        shutil.copy(work / name, out / f"{args.dataset}.{Path(name).name}")
    (out / f"{args.dataset}.summary.json").write_text(json.dumps({"seconds": seconds, "config": config}, indent=1))
    print(json.dumps(seconds))


if __name__ == "__main__":
    main()
