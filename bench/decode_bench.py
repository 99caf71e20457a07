"""Benchmark exact constrained top-K decoding (sidrec.decode) against Hugging Face
constrained beam search, at MiniOneRec's evaluation scale: a SmolLM2-135M-shaped Llama,
3,686 items with 3-level SIDs (256 codes a level), 120-token prompts, 50 beams, top 50.
Target: >= 1,500 rows/s on one H100.

    # one GPU, random weights of SmolLM2-135M's shape (bf16, SDPA)
    python bench/decode_bench.py --out benchmarks/decode_h100.json
    # a real model folder (its vocabulary must hold the SID tokens <a_0>.. or use --sid-base)
    python bench/decode_bench.py --model results/ml-100k/sft --out benchmarks/decode_sft.json
    # a CPU smoke run at toy size
    python bench/decode_bench.py --tiny --out /tmp/decode_tiny.json

Times, in one run and on the same prompts:
  ours/plain   constrained_topk(exact=False): batched tree-attention beam search,
               uncertified (the same search HF runs)
  ours/exact   constrained_topk(exact=True): the same plus the certificate and
               widening of the rows that fail it (the default)
  hf           model.generate(num_beams=B, num_return_sequences=k, max_new_tokens=L,
               prefix_allowed_tokens_fn=trie walk, length_penalty=0), on --hf-rows rows
and checks the top-k lists: overlap of HF's with ours (exact and plain), and, where
HF lists an item ours does not, that its score is <= our k-th score (ours is exact).

Random weights give near-uniform next-token distributions: every row's k-th score is
far below the best pruned prefix, so the certificate fails and exact decoding must
expand every prefix (the worst case). A fine-tuned model is far more confident; pass
--model to measure it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sidrec.decode import SIDTrie, constrained_topk, score_all_items  # noqa: E402
from sidrec.io import write_json  # noqa: E402

SMOLLM2_135M = dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                    intermediate_size=1536, base_vocab=49152, max_position_embeddings=8192,
                    rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=128, base_vocab=1000, max_position_embeddings=512,
            rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_codes(n: int, levels: int, k: int, rng) -> np.ndarray:
    """n unique random code tuples [n, levels] in 0..k-1."""
    if n > k ** levels:
        raise ValueError(f"{n} items do not fit in {k}^{levels} SIDs")
    codes = np.empty((0, levels), dtype=np.int64)
    while len(codes) < n:
        more = rng.integers(0, k, (2 * n, levels))
        codes = np.unique(np.concatenate([codes, more]), axis=0)
    return codes[rng.permutation(len(codes))[:n]]


def build_model(args, device, dtype, n_sid_tokens: int):
    """Random-weight Llama of the chosen shape, or --model PATH; -> (model, sid token base)."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
    if args.model:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype, attn_implementation="sdpa")
        base = args.sid_base if args.sid_base is not None else model.config.vocab_size - n_sid_tokens
        return model.to(device).eval(), base
    shape = dict(TINY if args.tiny else SMOLLM2_135M)
    base = shape.pop("base_vocab")
    config = LlamaConfig(vocab_size=base + n_sid_tokens, attn_implementation="sdpa", **shape)
    torch.manual_seed(args.seed)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    return model.to(dtype).eval(), base


def hf_topk(model, prompts, item_tokens: np.ndarray, *, k: int, beams: int, batch_size: int, pad: int):
    """HF constrained beam search -> items int64 [rows, k] (-1: not an item), scores
    float32 [rows, k] (sum of full-vocabulary log-probs; length_penalty=0)."""
    L = item_tokens.shape[1]
    allowed: dict[tuple, set] = {}
    for row in item_tokens.tolist():
        for d in range(L):
            allowed.setdefault(tuple(row[:d]), set()).add(row[d])
    allowed = {p: sorted(v) for p, v in allowed.items()}
    item_of = {tuple(row): i for i, row in enumerate(item_tokens.tolist())}
    device = next(model.parameters()).device
    items = np.full((len(prompts), k), -1, dtype=np.int64)
    scores = np.full((len(prompts), k), -np.inf, dtype=np.float32)
    for s in range(0, len(prompts), batch_size):
        chunk = prompts[s:s + batch_size]
        P = max(map(len, chunk))
        ids = torch.full((len(chunk), P), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), P), dtype=torch.long)
        for r, p in enumerate(chunk):
            ids[r, P - len(p):] = torch.as_tensor(p)
            mask[r, P - len(p):] = 1

        def prefix_allowed(_batch_id, input_ids, P=P):
            return allowed.get(tuple(input_ids[P:].tolist()), [pad])

        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), num_beams=beams,
                             num_return_sequences=k, max_new_tokens=L, min_new_tokens=L, do_sample=False,
                             length_penalty=0.0, early_stopping=True, prefix_allowed_tokens_fn=prefix_allowed,
                             pad_token_id=pad, eos_token_id=None, output_scores=True,
                             return_dict_in_generate=True, use_cache=True)
        seqs = out.sequences[:, P:].cpu().numpy().reshape(len(chunk), k, L)
        seq_scores = out.sequences_scores.float().cpu().numpy().reshape(len(chunk), k)
        for r in range(len(chunk)):
            items[s + r] = [item_of.get(tuple(t), -1) for t in seqs[r].tolist()]
            scores[s + r] = seq_scores[r]
    return items, scores


def compare(ours_items, ours_scores, hf_items, hf_scores, tol: float) -> dict:
    """Our top-k lists against another method's (HF or brute force), [rows, k] each:
    overlap, and, where the other lists an item ours does not, whether that item's
    score (as the other computed it) is <= our k-th score + tol, as exactness demands."""
    k = ours_items.shape[1]
    overlap, missing, ok = [], 0, 0
    for o, oscore, h, hscore in zip(ours_items, ours_scores, hf_items, hf_scores):
        common = np.intersect1d(o[o >= 0], h[h >= 0])
        overlap.append(len(common) / k)
        extra = ~np.isin(h, o)
        missing += int(extra.sum())
        ok += int((hscore[extra] <= oscore[-1] + tol).sum())
    return {"rows": int(len(overlap)), "overlap_mean": float(np.mean(overlap)),
            "overlap_min": float(np.min(overlap)),
            "rows_identical": int(sum(v == 1.0 for v in overlap)),
            "other_items_not_in_ours": missing, "of_which_scored_le_our_kth": ok,
            "ours_kth_minus_other_kth_mean": float(np.mean(ours_scores[:, -1] - hf_scores[:, -1])),
            "other_invalid": int((hf_items < 0).sum())}


def timed(fn, device):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("workload")
    g.add_argument("--tiny", action="store_true", help="toy sizes for a CPU smoke run")
    g.add_argument("--model", default=None, help="HF causal-LM folder (default: random weights)")
    g.add_argument("--sid-base", type=int, default=None,
                   help="vocab id of the first SID token (SID token of level l, code c = base + l*K + c); "
                        "default: the last L*K ids of the vocabulary")
    g.add_argument("--items", type=int, default=None, help="catalogue size (3686; tiny 300)")
    g.add_argument("--levels", type=int, default=3)
    g.add_argument("--codebook", type=int, default=None, help="codes per level (256; tiny 16)")
    g.add_argument("--prompt-len", type=int, default=None, help="tokens per prompt (120; tiny 20)")
    g.add_argument("--rows", type=int, default=None, help="rows timed for ours (2000; tiny 48)")
    g.add_argument("--exact-rows", type=int, default=None, help="rows timed for ours/exact (default --rows)")
    g.add_argument("--hf-rows", type=int, default=None, help="rows for HF generate (40; tiny 8); 0 skips it")
    g.add_argument("--warmup-rows", type=int, default=None,
                   help="untimed rows decoded first, other prompts (default --rows: every batch shape, "
                        "incl. the last partial batch, is seen once; cuDNN attention plans per shape)")
    g.add_argument("--brute-rows", type=int, default=2,
                   help="rows also scored item by item (score_all_items) to check ours/exact")
    g = p.add_argument_group("search")
    g.add_argument("--k", type=int, default=None, help="top-k (50; tiny 10)")
    g.add_argument("--beams", type=int, default=None, help="beam width (50; tiny 10)")
    g.add_argument("--batch-size", type=int, default=None, help="rows per forward, ours (256; tiny 16)")
    g.add_argument("--hf-batch-size", type=int, default=8, help="rows per HF generate call")
    g = p.add_argument_group("execution")
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    g.add_argument("--dtype", default=None, help="bfloat16 | float16 | float32 (bf16 on CUDA, fp32 on CPU)")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (tiny: 1; else torch's)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", default="benchmarks/decode_bench.json")
    args = p.parse_args(argv)

    t = args.tiny
    for name, big, small in (("items", 3686, 300), ("codebook", 256, 16), ("prompt_len", 120, 20),
                             ("rows", 2000, 48), ("hf_rows", 40, 8), ("k", 50, 10), ("beams", 50, 10),
                             ("batch_size", 256, 16)):
        if getattr(args, name) is None:
            setattr(args, name, small if t else big)
    args.exact_rows = args.rows if args.exact_rows is None else args.exact_rows
    args.warmup_rows = args.rows if args.warmup_rows is None else args.warmup_rows
    if args.threads or t:
        torch.set_num_threads(args.threads or 1)  # toy matrices: extra threads only contend
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))

    rng = np.random.default_rng(args.seed)
    L, K = args.levels, args.codebook
    model, sid_base = build_model(args, device, dtype, L * K)
    codes = random_codes(args.items, L, K, rng)
    level_ids = [sid_base + lvl * K + np.arange(K) for lvl in range(L)]
    trie = SIDTrie.build(codes, level_ids, device=device)
    n_prompts = max(args.rows, args.exact_rows, args.hf_rows, 1)
    prompts = rng.integers(0, sid_base, (args.warmup_rows + n_prompts, args.prompt_len)).tolist()
    warm, prompts = prompts[:args.warmup_rows], prompts[args.warmup_rows:]
    pad = 0
    kw = dict(k=args.k, beam_width=args.beams, batch_size=args.batch_size, pad_token_id=pad)

    # warm-up: kernels, allocator, cuBLAS heuristics and cuDNN plans for every batch shape
    constrained_topk(model, warm, trie, exact=False, **kw)
    if args.exact_rows:
        constrained_topk(model, warm[:args.batch_size], trie, exact=True, **kw)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def ours(rows: int, exact: bool) -> dict:
        res, sec = timed(lambda: constrained_topk(model, prompts[:rows], trie, exact=exact, **kw), device)
        assert res.invalid == 0 and (not exact or res.stats["uncertified_rows"] == 0)
        return {"rows": rows, "seconds": round(sec, 4), "rows_per_s": round(rows / sec, 1), "stats": res.stats,
                "_res": res}

    runs = {}
    if args.rows:
        runs["ours/plain"] = ours(args.rows, exact=False)
    if args.exact_rows:
        runs["ours/exact"] = ours(args.exact_rows, exact=True)
    checks = {}
    tol = 1e-3 if dtype == torch.float32 else 0.1  # other batch shapes round bf16 differently
    if args.hf_rows:
        item_tokens = trie.item_tokens.cpu().numpy()

        def hf(q, b):
            return hf_topk(model, q, item_tokens, k=args.k, beams=args.beams, batch_size=b, pad=pad)

        hf(prompts[:1], 1)  # warm-up
        (hf_items, hf_scores), sec = timed(lambda: hf(prompts[:args.hf_rows], args.hf_batch_size), device)
        runs["hf generate"] = {"rows": args.hf_rows, "seconds": round(sec, 4),
                               "rows_per_s": round(args.hf_rows / sec, 1), "batch_size": args.hf_batch_size,
                               "invalid": int((hf_items < 0).sum())}
        for name in ("ours/exact", "ours/plain"):
            if name in runs:
                res, n = runs[name]["_res"], min(args.hf_rows, runs[name]["rows"])
                checks[f"hf vs {name}"] = compare(res.items[:n], res.scores[:n], hf_items[:n], hf_scores[:n], tol)
    if args.brute_rows and "ours/exact" in runs:
        res, n = runs["ours/exact"]["_res"], min(args.brute_rows, args.exact_rows)
        with torch.inference_mode():
            brute = np.stack([score_all_items(model, q, trie) for q in prompts[:n]])
        top = np.argsort(-brute, axis=1, kind="stable")[:, :args.k]
        c = compare(res.items[:n], res.scores[:n], top, np.take_along_axis(brute, top, 1), tol)
        c["max_abs_score_diff_on_ours"] = float(np.abs(np.take_along_axis(brute, res.items[:n], 1)
                                                      - res.scores[:n]).max())
        checks["brute force vs ours/exact"] = c

    import transformers
    env = {"torch": torch.__version__, "transformers": transformers.__version__, "device": str(device),
           "dtype": str(dtype).replace("torch.", "")}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["max_memory_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    else:
        env["threads"] = torch.get_num_threads()
    result = {"args": vars(args), "env": env, "n_items": int(trie.n_items), "trie_nodes": list(trie.n_nodes),
              "runs": {k: {f: v for f, v in r.items() if f != "_res"} for k, r in runs.items()},
              "checks": checks}
    write_json(args.out, json.loads(json.dumps(result, default=str)))

    print(f"decode_bench items={trie.n_items} L={L} K={K} prompt={args.prompt_len} beams={args.beams} "
          f"k={args.k} batch={args.batch_size} {env.get('gpu', args.device)} {env['dtype']} "
          f"model={args.model or ('tiny random' if t else 'SmolLM2-135M-shaped random')}")
    print(f"{'method':<13}{'rows':>6}{'seconds':>9}{'rows/s':>9}  notes")
    for name, r in runs.items():
        s = r.get("stats", {})
        if name == "ours/plain":
            note = f"rows failing the certificate {s['uncertified_rows']}/{r['rows']} (not widened)"
        elif name == "ours/exact":
            note = (f"certified first pass {s['certified_first_pass']}/{r['rows']}, widened {s['widened_rows']} "
                    f"(rounds {s['widen_rounds']}, full fan-out {s['full_fanout_rows']}), "
                    f"max beams per level {s['max_widths']}")
        else:
            note = f"batch {r['batch_size']}, outputs not items {r['invalid']}"
        print(f"{name:<13}{r['rows']:>6}{r['seconds']:>9.3f}{r['rows_per_s']:>9.1f}  {note}")
    for name, c in checks.items():
        extra = (f", max |score diff| on our items {c['max_abs_score_diff_on_ours']:.2e}"
                 if "max_abs_score_diff_on_ours" in c else
                 f", mean(our k-th - their k-th) {c['ours_kth_minus_other_kth_mean']:+.4f}")
        print(f"  {name}: overlap {c['overlap_mean']:.4f} (min {c['overlap_min']:.2f}, identical rows "
              f"{c['rows_identical']}/{c['rows']}); their items not in ours {c['other_items_not_in_ours']}, "
              f"of which scored <= our k-th (+{tol}) {c['of_which_scored_le_our_kth']}{extra}")
    print(f"-> {args.out}", flush=True)
    return result


if __name__ == "__main__":
    main()
