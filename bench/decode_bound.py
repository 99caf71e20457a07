"""How exact are `constrained_topk`'s exact lists for a reduced-precision model? One
library function, on a model folder the pipeline made and that dataset's valid rows.

    python bench/decode_bound.py --model results/ml-100k/seed-0/sft --results results/ml-100k \
        --dtype bfloat16 --device cpu --threads 1 --out bound.json
    # SmolLM2 on a GPU (config/gpu.yaml's sft folder)
    python bench/decode_bound.py --model results/Industrial_and_Scientific/seed-0/sft \
        --results results/Industrial_and_Scientific --dtype bfloat16 --device cuda --out bound.json

On `--rows` seeded valid rows, in `--dtype`:
  (i)   constrained_topk (exact, float32 rescoring, the default): the search pass's
        rounding as the rescoring saw it (stats max_score_gap), the largest certificate
        margin a row demanded (max_tolerance), uncertified rows, seconds;
  (ii)  on the first `--brute-rows` of them, brute force: every catalogue item's float32
        score, computed apart from the decoder (the float32 model of the same weights;
        the prompt's KV cache from one plain forward, then the items' SID tokens in
        chunks against the expanded cache, plain causal attention; cross-checked on some
        items against full-sequence scoring, `score_all_items`). Per list: is it brute
        force's top k, the largest |list score - brute score|, and the largest brute
        score of an item NOT in the list minus the list's k-th score (<= 0: nothing
        better was missed; a positive value up to float32 rounding is a near-tie). The
        same for rescore=False (the search pass's own scores and certificate), which
        shows what the rescoring fixes;
  (iii) batch_size 1 against `--batch-size`: identical lists, and the largest score
        difference.
Prints a JSON summary (and writes it to `--out`).
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from sidrec.data.tables import read_samples  # noqa: E402
from sidrec.decode import constrained_topk, score_all_items  # noqa: E402
from sidrec.recommend import Recommender  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def brute_scores(model, prompt: list[int], trie, chunk: int) -> np.ndarray:
    """float32 [n_items]: every item's sequence log-probability after `prompt` with
    `model` (float32), apart from the decoder's code: one plain causal forward of the
    prompt, then the items' first L-1 tokens, `chunk` items at a time, against copies
    of the prompt's cache (no tree mask, no padding); log-softmax over the full
    vocabulary in float32, summed in level order."""
    device = next(model.parameters()).device
    ids = torch.as_tensor([prompt], dtype=torch.long, device=device)
    out = model(input_ids=ids, use_cache=True)
    prompt_cache, P = out.past_key_values, ids.shape[1]
    tokens = trie.item_tokens.to(device)                                    # [n, L]
    n, L = tokens.shape
    score = torch.log_softmax(out.logits[0, -1].float(), -1)[tokens[:, 0]]   # level 0
    for s in range(0, n if L > 1 else 0, chunk):
        t = tokens[s:s + chunk]
        cache = copy.deepcopy(prompt_cache)
        cache.batch_repeat_interleave(t.shape[0])
        pos = torch.arange(P, P + L - 1, device=device).expand(t.shape[0], -1)
        logits = model(input_ids=t[:, :L - 1], past_key_values=cache, position_ids=pos).logits
        lp = torch.log_softmax(logits.float(), -1).gather(2, t[:, 1:, None])[..., 0]  # [b, L-1]
        for d in range(L - 1):
            score[s:s + t.shape[0]] += lp[:, d]
    return score.cpu().numpy()


def against_brute(items: np.ndarray, scores: np.ndarray, brute: np.ndarray, k: int) -> dict:
    """One row's list against brute force's scores of every item."""
    order = np.argsort(-brute, kind="stable")
    outside = np.ones(len(brute), dtype=bool)
    outside[items] = False
    return {"equal": bool(np.array_equal(items, order[:k])),
            "same_set": bool(set(items.tolist()) == set(order[:k].tolist())),
            "max_score_error": float(np.abs(scores - brute[items]).max()),
            "best_missed_minus_kth": float(brute[outside].max() - brute[items].min()) if outside.any() else None,
            "brute_gap_at_k": float(brute[order[k - 1]] - brute[order[k]]) if len(brute) > k else None}


def summarise(rows: list[dict]) -> dict:
    missed = [r["best_missed_minus_kth"] for r in rows if r["best_missed_minus_kth"] is not None]
    return {"rows": len(rows), "lists_equal_brute": sum(r["equal"] for r in rows),
            "sets_equal_brute": sum(r["same_set"] for r in rows),
            "max_score_error": max(r["max_score_error"] for r in rows),
            "max_best_missed_minus_kth": max(missed) if missed else None,
            "min_brute_gap_at_k": min((r["brute_gap_at_k"] for r in rows if r["brute_gap_at_k"] is not None),
                                      default=None)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a save_pretrained folder, e.g. results/DATASET/sft")
    ap.add_argument("--results", required=True, help="results/DATASET or results/DATASET/seed-S")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--brute-rows", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--beam", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when available)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    ap.add_argument("--item-chunk", type=int, default=256, help="items per brute-force forward")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision("highest")  # brute force in full float32 (no TF32)

    from sidrec.results import ResultsFolder

    res = ResultsFolder.find(args.results)
    rec = Recommender.from_artifacts(args.model, res.items, res.sid,
                                     device=args.device, dtype=args.dtype)
    device = next(rec.model.parameters()).device
    samples = read_samples(res.data / f"{args.split}.parquet", rec.builder.n_items)
    rng = np.random.default_rng(args.seed)
    picked = np.sort(rng.choice(len(samples), min(args.rows, len(samples)), replace=False))
    prompts = rec.prompts(samples["history"].iloc[picked].tolist())
    k = min(args.k, rec.trie.n_items)
    reference = rec.reference()   # float32 weights: the rescoring's model and brute force's
    kw = dict(k=k, beam_width=max(k, args.beam), pad_token_id=rec.tokenizer.pad_token_id, reference=reference)

    def timed(**extra):
        sync(device)
        start = time.perf_counter()
        out = constrained_topk(rec.model, prompts, rec.trie, **kw, **extra)
        sync(device)
        return out, time.perf_counter() - start

    exact, seconds = timed(batch_size=args.batch_size)
    one, seconds_one = timed(batch_size=1)
    search, seconds_search = timed(batch_size=args.batch_size, rescore=False)

    n_brute = min(args.brute_rows, len(prompts))
    start = time.perf_counter()
    brute = [brute_scores(reference, p, rec.trie, args.item_chunk) for p in prompts[:n_brute]]
    seconds_brute = time.perf_counter() - start
    check = np.arange(min(64, rec.trie.n_items))   # the cached brute force against full sequences
    full = score_all_items(reference, prompts[0], rec.trie)[check] if n_brute else None

    report = {
        "model": args.model, "results": args.results, "split": args.split, "rows": len(prompts),
        "rows_picked_seed": args.seed, "k": k, "beam": max(k, args.beam), "batch_size": args.batch_size,
        "dtype": str(rec.model.dtype), "device": str(device), "threads": torch.get_num_threads(),
        "n_items": rec.trie.n_items, "levels": rec.trie.levels,
        "parameters": sum(p.numel() for p in rec.model.parameters()),
        "prompt_tokens_mean": float(np.mean([len(p) for p in prompts])),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip(),
        "torch": torch.__version__, "python": platform.python_version(),
        "exact": {"seconds": round(seconds, 3), "rows_per_second": round(len(prompts) / seconds, 2),
                  "invalid": exact.invalid, **{key: exact.stats[key] for key in (
                      "max_score_gap", "max_tolerance", "uncertified_rows", "certified_first_pass",
                      "widened_rows", "widen_rounds", "full_fanout_rows", "rescored_candidates", "max_widths")}},
        "search_only": {"seconds": round(seconds_search, 3), "uncertified_rows": search.stats["uncertified_rows"],
                        "certified_first_pass": search.stats["certified_first_pass"]},
        "batch_1_vs_batch": {"lists_identical": bool(np.array_equal(one.items, exact.items)),
                             "rows_differing": int((one.items != exact.items).any(1).sum()),
                             "max_score_difference": float(np.nanmax(np.abs(one.scores - exact.scores))),
                             "seconds_batch_1": round(seconds_one, 3)},
    }
    if n_brute:
        report["brute"] = {
            "rows": n_brute, "seconds": round(seconds_brute, 2),
            "cached_vs_full_sequence_max_difference": float(np.abs(brute[0][check] - full).max()),
            "exact": summarise([against_brute(exact.items[r, :k], exact.scores[r, :k], brute[r], k)
                                for r in range(n_brute)]),
            "search_only": summarise([against_brute(search.items[r, :k], search.scores[r, :k], brute[r], k)
                                      for r in range(n_brute)]),
        }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
