"""Time the plain constrained beam search at serving batch sizes: eager
(`constrained_topk(exact=False)`) against its CUDA-graph replay (`sidrec.decode.graphs`),
in one process, on the same prompts. Random weights of SmolLM2-135M's shape (the plain
search's cost does not depend on the weights), an Office-sized catalogue (3,459 items,
3 levels of 256 codes), Office-length prompts, 50 beams.

    python bench/beam_graphs_bench.py --out benchmarks/beam_graphs_h200.json
    python bench/beam_graphs_bench.py --tiny --device cpu     # a smoke run (no graphs on a CPU)

Per batch size: the median milliseconds of a decode over --repeats calls, rows/s, the
graph's capture seconds (paid once per shape), and the share of rows whose top-k items
are the same in both (the padded prompts round differently; ties may swap).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from decode_bench import build_model, random_codes  # noqa: E402
from sidrec.decode import SIDTrie, constrained_topk  # noqa: E402
from sidrec.decode.graphs import BeamGraphs  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="toy sizes (CPU smoke run)")
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 8, 32, 64])
    ap.add_argument("--items", type=int, default=3459)
    ap.add_argument("--prompt-len", type=int, default=130)
    ap.add_argument("--k", type=int, default=20, help="items decoded per row (a request's k + its history)")
    ap.add_argument("--beams", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="bfloat16 | float32 (bf16 on CUDA, fp32 on CPU)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    args.model, args.sid_base = None, None
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    levels, codebook = 3, (16 if args.tiny else 256)
    items = min(args.items, 300) if args.tiny else args.items

    rng = np.random.default_rng(args.seed)
    model, sid_base = build_model(args, device, dtype, levels * codebook)
    codes = random_codes(items, levels, codebook, rng)
    trie = SIDTrie.build(codes, [sid_base + lvl * codebook + np.arange(codebook) for lvl in range(levels)],
                         device=device)
    graphs = BeamGraphs(model, trie, beam_width=args.beams, pad_token_id=0)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "dtype": str(dtype), "torch": torch.__version__, "items": items, "k": args.k,
              "beams": args.beams, "prompt_len": args.prompt_len, "command": " ".join(sys.argv), "rows": []}
    for rows in args.rows:
        # prompts of varied lengths around --prompt-len, as a server's batch has
        prompts = [rng.integers(1, sid_base, int(rng.integers(args.prompt_len - 20, args.prompt_len + 1))).tolist()
                   for _ in range(rows)]

        def eager():
            return constrained_topk(model, prompts, trie, k=args.k, beam_width=args.beams, batch_size=rows,
                                    exact=False, pad_token_id=0)
        want = eager()  # warm-up of this shape
        sync(device)
        start = time.perf_counter()
        got = graphs.topk(prompts, args.k)  # captures this shape's graph (on CUDA)
        sync(device)
        capture_s = time.perf_counter() - start
        same = float(np.mean([set(a) == set(b) for a, b in zip(want.items.tolist(), got.items.tolist())]))
        eager_ms = median_ms(eager, device, args.repeats)
        graph_ms = median_ms(lambda: graphs.topk(prompts, args.k), device, args.repeats)
        row = {"rows": rows, "eager_ms": round(eager_ms, 2), "graph_ms": round(graph_ms, 2),
               "speedup": round(eager_ms / graph_ms, 2), "eager_rows_per_s": round(1000 * rows / eager_ms, 1),
               "graph_rows_per_s": round(1000 * rows / graph_ms, 1), "first_call_s": round(capture_s, 2),
               "same_items_rows": same}
        report["rows"].append(row)
        print(json.dumps(row), flush=True)
    report["graphs"] = graphs.stats()
    if device.type == "cuda":
        report["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
