"""Sweep SFT settings for one dataset: for each setting, (re)build the base model if its
shape differs, run `train_sft`, decode the valid (and test) rows with the constrained
beam search, and print one JSON line per setting with losses, valid/test NDCG@10 and
HR@10, steps and seconds. Selection is on valid; test is recorded beside it.

Settings run in parallel worker processes (one GPU each, or several per GPU: tiny
models leave a GPU mostly idle). Training is float32 everywhere, so a setting's curve
on a GPU is the one the CPU default would follow for the same steps.

    python bench/sft_sweep.py --results results/ml-100k --settings bench/sweeps/ml100k.json \
        --workers 4 --out $OUT/sweep.jsonl
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_setting(setting: dict, results: str, base_tiny: dict, sft_defaults: dict, k: int, beam: int) -> dict:
    import torch

    from sidrec.data.tables import read_items, read_samples
    from sidrec.lm.base import build_tiny, load_causal_lm
    from sidrec.lm.prompts import tokenizer_corpus
    from sidrec.lm.sft import train_sft
    from sidrec.metrics import hit_rate_at_k, ndcg_at_k
    from sidrec.recommend import Recommender
    from sidrec.sid import read_sid_json

    res = Path(results)
    items = read_items(res / "data/items.parquet")
    codes = read_sid_json(res / "sid.json", n_items=len(items))
    train = read_samples(res / "data/train.parquet", len(items))
    valid = read_samples(res / "data/valid.parquet", len(items))
    test = read_samples(res / "data/test.parquet", len(items))
    titles = items["title"].tolist()
    work = Path(tempfile.mkdtemp(prefix=f"sweep-{setting['name']}-"))
    start = time.perf_counter()
    tiny = {**base_tiny, **setting.get("tiny", {})}
    build_tiny(work / "base", tokenizer_corpus(titles), tiny)
    hp = {**sft_defaults, **setting.get("sft", {}), "bf16": False}
    report = train_sft(work / "base", train, valid, codes, titles, work / "sft", hp,
                       scratch_dir=work / "scratch", log=lambda *_: None)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer = load_causal_lm(work / "sft", dtype=torch.float32, device=device)
    recommender = Recommender(model, tokenizer, codes, titles)
    out = {"name": setting["name"], "tiny": tiny, "sft": dict(hp),
           "steps": report["steps"], "best_step": report["best_checkpoint_step"],
           "best_eval_loss": report["best_eval_loss"],
           "eval_loss": [(e["step"], round(e["loss"], 3)) for e in report["eval_loss"]],
           "train_seconds": report["train_seconds"], "tokens_seen": report["train_tokens_seen"]}
    for split, samples in (("valid", valid), ("test", test)):
        r = recommender.top_k(samples["history"], k, beam_width=beam, exact=False)
        targets = samples["target"].to_numpy()
        out[f"{split}_ndcg10"] = round(ndcg_at_k(r.items, targets, 10), 4)
        out[f"{split}_hr10"] = round(hit_rate_at_k(r.items, targets, 10), 4)
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def worker(queue, results_q, gpu, args, base_tiny, sft_defaults):
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    while True:
        setting = queue.get()
        if setting is None:
            return
        try:
            results_q.put(run_setting(setting, args.results, base_tiny, sft_defaults, args.k, args.beam))
        except Exception as e:  # one failed setting must not stop the sweep
            results_q.put({"name": setting["name"], "error": repr(e)})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True, help="results/<dataset> with data/ and sid.json")
    ap.add_argument("--settings", required=True, help="JSON: {tiny: {...}, sft: {...}, settings: [...]}")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--gpus", type=int, default=0, help="GPUs to spread workers over (0: CPU)")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--beam", type=int, default=20)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    spec = json.loads(Path(args.settings).read_text())
    ctx = mp.get_context("spawn")
    queue, results_q = ctx.Queue(), ctx.Queue()
    for s in spec["settings"]:
        queue.put(s)
    for _ in range(args.workers):
        queue.put(None)
    procs = [ctx.Process(target=worker, args=(queue, results_q, (i % args.gpus) if args.gpus else None,
                                              args, spec.get("tiny", {}), spec.get("sft", {})))
             for i in range(args.workers)]
    for p in procs:
        p.start()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as f:
        for _ in spec["settings"]:
            line = json.dumps(results_q.get())
            print(line, flush=True)
            f.write(line + "\n")
            f.flush()
    for p in procs:
        p.join()


if __name__ == "__main__":
    main()
