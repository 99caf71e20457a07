"""Where the exact decoder's widening passes spend their time: for one trained model and
split, run `constrained_topk` (exact) with its internals wrapped, and report the first
pass against the widening passes: forwards, rows per forward, the beam width each
chunk was sized for (the `trie.below` bound of `_widening_chunks`) against the width
the pass then held, and seconds.

    python bench/widening_profile.py --model results/Industrial_and_Scientific/seed-0/sft \
        --results results/Industrial_and_Scientific --split valid --rows 1000 --out profile.json
    # the same with every round sized by the trie bound, as before the capped first round:
    python bench/widening_profile.py ... --bounded-only --out bounded.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--results", required=True, help="results/DATASET or results/DATASET/seed-S")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--beam", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--bounded-only", action="store_true",
                    help="size every widening round by the trie bound (the decoder before the capped first round)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from sidrec.data.tables import read_samples
    from sidrec.decode import beam
    from sidrec.recommend import Recommender

    from sidrec.results import ResultsFolder

    res = ResultsFolder.find(args.results)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rec = Recommender.from_artifacts(args.model, res.items, res.sid, device=device)
    samples = read_samples(res.data / f"{args.split}.parquet", rec.builder.n_items).iloc[: args.rows]

    passes = []             # one entry per _decode_batch call
    planned = []            # per widening chunk: rows, cap, depth-1 need and trie bound
    real_decode, real_chunks = beam._decode_batch, beam._widening_chunks

    def timed_decode(model, ids, attn, trie, **kw):
        if ids.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = real_decode(model, ids, attn, trie, **kw)
        if ids.is_cuda:
            torch.cuda.synchronize()
        passes.append({"widening": kw.get("floor") is not None, "rows": int(ids.shape[0]),
                       "widths": out.widths, "seconds": time.perf_counter() - start})
        return out

    def sized_chunks(level0, floor, trie, base, budget, optimistic=False):
        optimistic = optimistic and not args.bounded_only
        chunks = real_chunks(level0, floor, trie, base, budget, optimistic)
        below = trie.below.cpu().numpy()
        bound = (level0 >= floor[:, None]).astype(np.int64) @ below.T
        depth1 = (level0 >= floor[:, None]).sum(1)
        for rows, cap in chunks:
            planned.append({"rows": len(rows), "optimistic": optimistic, "cap": cap,
                            "depth1_need": int(depth1[rows].max()), "bound": int(bound[rows].max())})
        return chunks

    beam._decode_batch, beam._widening_chunks = timed_decode, sized_chunks
    start = time.perf_counter()
    result = rec.top_k(samples["history"].tolist(), k=args.k, beam_width=args.beam,
                       batch_size=args.batch_size, exact=True)
    total = time.perf_counter() - start

    def summary(rows):
        if not rows:
            return {"forwards": 0}
        return {"forwards": len(rows), "rows": sum(p["rows"] for p in rows),
                "mean_rows_per_forward": round(float(np.mean([p["rows"] for p in rows])), 1),
                "max_width_held": max(max(p["widths"]) for p in rows),
                "seconds": round(sum(p["seconds"] for p in rows), 2)}

    widening = [p for p in passes if p["widening"]]
    report = {"mode": "bounded only" if args.bounded_only else "capped first round",
              "model": args.model, "split": args.split, "rows": len(samples), "k": args.k,
              "beam": args.beam, "batch_size": args.batch_size,
              "device": str(next(rec.model.parameters()).device), "seconds": round(total, 2),
              "rows_per_second": round(len(samples) / total, 1), "stats": result.stats,
              "first_pass": summary([p for p in passes if not p["widening"]]),
              "widening": summary(widening),
              "widening_bound_median": float(np.median([c["bound"] for c in planned])) if planned else None,
              "widening_depth1_need_median": float(np.median([c["depth1_need"] for c in planned])) if planned else None,
              "widening_held_median": float(np.median([max(p["widths"]) for p in widening])) if widening else None,
              "chunks": planned}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("stats", "chunks")}, indent=1))


if __name__ == "__main__":
    main()
