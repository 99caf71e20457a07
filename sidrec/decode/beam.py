"""Exact constrained top-K decoding of semantic IDs with a Hugging Face causal LM.

`constrained_topk` returns, for every prompt, the K catalogue items of highest
sequence log-probability

    score(item) = sum over its L SID tokens of log_softmax(logits over the FULL vocabulary)

and proves, row by row, that they are the true top K (ties aside).

How one row is decoded
----------------------
1. Prefill: the left-padded prompt runs once (batched over rows); its logits give the
   level-0 distribution and its KV cache stays in place.
2. Beam steps: the W beams of a row are fed as W query tokens *of that row* (tree
   attention), not as W copies of the row. A custom 4D attention mask lets each beam
   token see the prompt, its own ancestors from earlier steps and itself, and nothing
   else; position ids are the same for all beams of a step. The prompt's KV cache is
   therefore shared by all beams without being copied (no repeat_interleave, no cache
   reorder: a pruned beam simply stops being an ancestor), and the cache grows by W
   columns per step. With L levels only L-1 steps run; the last level is read from
   the last step's logits. The trie (sidrec.decode.trie) is a set of device tensors, so
   a step is a forward pass plus a few gathers and one top-k: no Python per row, no
   host synchronisation.
3. Certificate: every log-probability is <= 0, so a pruned prefix's score bounds every
   completion below it. If at every level the best pruned prefix scores <= the row's
   k-th final score, nothing pruned can beat the result: it is exact. This is the one
   host synchronisation of the batched pass.
4. Widening: rows that fail are decoded again with beams wide enough to hold, at
   every level, every prefix scoring >= the row's k-th score from the pass before
   (that k-th score is a lower bound of the true k-th, because it belongs to real
   items). Such a pass is exact by construction and is checked by the same
   certificate. The first widening round packs many rows into each forward: it sizes
   them by what depth 1 needs (known exactly from the level-0 scores) and caps deeper
   levels to fit the token budget; a row the cap cuts short fails its certificate and
   goes on to rounds sized by the trie's (loose, safe) bound. Rows failing again
   (only float noise between batch shapes can do that, or the cap) get further guided
   passes, and after `_GUIDED_ROUNDS` a pass with no pruning at
   all (the beam covers each level's full fan-out), which is trivially certified.
   Guided widths replace the doubling schedule (B, 2B, 4B, ...): one pass with exactly
   the needed width per level costs fewer forward tokens than the doublings that lead
   to the same width, and a level needing few beams is not inflated to the widest
   level's count.

Requirements on the model: a decoder-only HF model whose forward accepts
`position_ids`, `past_key_values`, `logits_to_keep` and a 4D additive float attention
mask (Llama, Qwen2, Mistral, ... with attn_implementation "sdpa" or "eager").
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .trie import SIDTrie

# Guided widening rounds before falling back to a pass with no pruning: the first sized
# by what depth 1 needs (capped), the others by the trie's bound (see _widening_chunks).
_GUIDED_ROUNDS = 3
# Log-softmax is computed in float32 over at most this many logits at a time (caps the
# temporary float copy of a [rows, beams, vocab] logits tensor).
_LSE_CHUNK_ELEMENTS = 1 << 28
_SUPPORTED_ATTENTION = ("sdpa", "eager")
# Widening passes round their beam counts up to a multiple of this.
_WIDTH_STEP = 16
# Widening passes may feed this many times the first pass's query tokens per step
# (batch_size x beam_width): their rows are few and wide, and fewer, larger forwards
# spend less time launching kernels.
_WIDEN_BUDGET_FACTOR = 4


@dataclass
class DecodeResult:
    """items int64 [rows, k], best first; scores float32 [rows, k] (sequence
    log-probabilities). When the catalogue holds fewer than k items, columns
    n_items..k-1 are -1 / -inf. `invalid`: returned entries (outside that padding) that
    are not catalogue items or repeat an item of their row; 0 by construction.
    `stats`: counts of the run (see `constrained_topk`)."""
    items: np.ndarray
    scores: np.ndarray
    invalid: int
    stats: dict = field(default_factory=dict)


@dataclass
class _Pass:
    """One batched decode of R rows (device tensors)."""
    items: torch.Tensor      # int64 [R, k_eff], -1 where fewer were found
    scores: torch.Tensor     # float32 [R, k_eff], -inf where fewer were found
    pruned: torch.Tensor     # float32 [R]: best score of any pruned prefix (-inf: none)
    level0: torch.Tensor     # float32 [R, K_0]: every level-0 code's score (-inf: unused)
    widths: list[int]        # beams held at depths 1..L-1
    decode_tokens: int       # query tokens fed in beam steps, all rows

    @property
    def kth(self) -> torch.Tensor:
        return self.scores[:, -1]

    @property
    def certified(self) -> torch.Tensor:
        """bool [R]: no pruned prefix can hold an item scoring above the k-th."""
        return self.pruned <= self.kth


def _model_device_dtype(model) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype


def _log_probs(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """logits [R, W, V] -> float32 [R, W, len(token_ids)]: log_softmax over the full
    vocabulary, read at `token_ids`. Computed in float32 whatever the model dtype (a
    bf16 result would round scores by ~0.06); log_softmax(dtype=float32) reads bf16
    logits in one fused kernel, about 5x less memory traffic than upcast + logsumexp."""
    R, W, V = logits.shape
    flat = logits.reshape(R * W, V)
    step = max(1, _LSE_CHUNK_ELEMENTS // V)
    out = [torch.log_softmax(flat[s:s + step], -1, dtype=torch.float32).index_select(1, token_ids)
           for s in range(0, R * W, step)]
    return (out[0] if len(out) == 1 else torch.cat(out)).reshape(R, W, -1)


def _collate(prompts, pad_token_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad -> input_ids int64 [R, P], attention_mask bool [R, P] on `device`."""
    P = max(len(p) for p in prompts)
    ids = np.full((len(prompts), P), pad_token_id, dtype=np.int64)
    mask = np.zeros((len(prompts), P), dtype=bool)
    for r, p in enumerate(prompts):
        if len(p):
            ids[r, P - len(p):] = p
            mask[r, P - len(p):] = True
    ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
    if device.type == "cuda":  # pinned -> the copy does not block the host
        ids_t, mask_t = ids_t.pin_memory(), mask_t.pin_memory()
    return ids_t.to(device, non_blocking=True), mask_t.to(device, non_blocking=True)


@torch.inference_mode()
def _decode_batch(model, ids: torch.Tensor, attn: torch.Tensor, trie: SIDTrie, *, k_eff: int,
                  widths: list[int], floor: torch.Tensor | None = None, max_width: int | None = None) -> _Pass:
    """Beam-decode R left-padded rows: ids int64 [R, P], attn bool [R, P].

    widths[d] (d = 1..L-1): beams kept at depth d. With `floor` (float32 [R]) the width
    at each depth grows to hold every candidate scoring >= its row's floor (one host
    sync per level; used only for widening passes), but not beyond `max_width`: what
    that cuts off counts as pruned, so the certificate stays sound.
    """
    R, P = ids.shape
    L = trie.levels
    dev = ids.device
    dtype = _model_device_dtype(model)[1]
    neg = torch.finfo(dtype).min  # additive mask value, as HF uses
    ninf = float("-inf")

    pos = (attn.long().cumsum(1) - 1).clamp(min=0)
    plen = attn.sum(1)                                                     # [R]
    out = model(input_ids=ids, attention_mask=attn.long(), position_ids=pos,
                use_cache=True, logits_to_keep=1)
    cache, logits = out.past_key_values, out.logits                        # [R, 1, V]
    prompt_bias = torch.zeros(R, 1, 1, P, dtype=dtype, device=dev).masked_fill_(~attn[:, None, None, :], neg)

    nodes = torch.zeros(R, 1, dtype=torch.long, device=dev)                # depth-d node per beam
    score = torch.zeros(R, 1, dtype=torch.float32, device=dev)
    anc = torch.zeros(R, 1, 0, dtype=torch.bool, device=dev)               # beam -> decoded cache columns it sees
    pruned = torch.full((R,), ninf, device=dev)
    level0 = None
    kept, decode_tokens = [], 0
    for d in range(L):
        if d > 0:
            # Feed the depth-d beams' last tokens as W queries of their own row.
            W = nodes.shape[1]
            tree = torch.zeros(anc.shape, dtype=dtype, device=dev).masked_fill_(~anc, neg)
            mask = torch.cat([prompt_bias.expand(R, 1, W, P), tree[:, None]], -1)   # [R, 1, W, P + T]
            out = model(input_ids=trie.node_token[d][nodes], attention_mask=mask,
                        position_ids=(plen + d - 1)[:, None].expand(R, W),
                        past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits                # [R, W, V]
            decode_tokens += R * W
        K = trie.codebook_sizes[d]
        child = trie.child[d][nodes].long()                                # [R, W, K]
        lp = _log_probs(logits, trie.level_tokens[d])                      # [R, W, K]
        cand = torch.where(child >= 0, score[..., None] + lp, ninf).flatten(1)  # [R, W*K]
        child = child.flatten(1)
        if d == 0:
            level0 = cand
        if d == L - 1:
            top, idx = cand.topk(min(k_eff, cand.shape[1]), dim=1)
            leaf = torch.where(top > ninf, child.gather(1, idx), -1)
            items, scores = trie.items_of(leaf), top
            if scores.shape[1] < k_eff:  # fewer candidates than k_eff: only a too-narrow beam
                pad = k_eff - scores.shape[1]
                items = torch.cat([items, items.new_full((R, pad), -1)], 1)
                scores = torch.cat([scores, scores.new_full((R, pad), ninf)], 1)
            break

        width = widths[d + 1]
        if floor is not None:  # widening pass: hold everything that may still matter
            need = int((cand >= floor[:, None]).sum(1).max().item())
            # rounded up so that passes share a few shapes (kernel/allocator reuse)
            width = max(width, -(-need // _WIDTH_STEP) * _WIDTH_STEP)
            if max_width is not None:
                width = max(widths[d + 1], min(width, max_width))
        width = max(1, min(width, trie.n_nodes[d + 1], cand.shape[1]))
        top, idx = cand.topk(min(width + 1, cand.shape[1]), dim=1)
        if top.shape[1] > width:
            pruned = torch.maximum(pruned, top[:, width])
            top, idx = top[:, :width], idx[:, :width]
        parent = idx // K
        nodes = child.gather(1, idx).clamp(min=0)  # -inf beams (too few candidates) park on node 0
        score = top
        eye = torch.eye(width, dtype=torch.bool, device=dev).expand(R, width, width)
        anc = torch.cat([anc.gather(1, parent[..., None].expand(R, width, anc.shape[2])), eye], -1)
        kept.append(width)
    return _Pass(items=items, scores=scores, pruned=pruned, level0=level0, widths=kept,
                 decode_tokens=decode_tokens)


def _check_model(model) -> None:
    impl = getattr(model.config, "_attn_implementation", None)
    if impl is not None and impl not in _SUPPORTED_ATTENTION:
        raise ValueError(f"constrained_topk needs attn_implementation in {_SUPPORTED_ATTENTION} "
                         f"(it passes a custom 4D attention mask); the model uses {impl!r}")


def _widening_chunks(level0: np.ndarray, floor: np.ndarray, trie: SIDTrie, base: list[int],
                     budget: int, optimistic: bool = False) -> list[tuple[np.ndarray, int | None]]:
    """Group failing rows so that rows x (widest step) stays within `budget` query tokens.

    level0 float32 [n, K_0], floor float32 [n] -> (index array into the n rows, max_width)
    per chunk. The width a row needs at depth 1 is exact: its level-0 codes scoring >=
    its floor. Deeper, it is at most the depth-d nodes under those codes (trie.below),
    a bound ~16x what the passes then held on Industrial (bench/RESULTS.md).
    optimistic: size chunks by the depth-1 need and cap every depth at budget / rows
    (rows the cap cuts short fail their certificate and go to the bounded rounds);
    otherwise size them by the bound, with no cap. Widths are rounded as
    `_decode_batch` rounds them."""
    if optimistic:
        need = (level0 >= floor[:, None]).sum(1, keepdims=True).astype(np.int64)
        need = np.repeat(need, trie.levels - 1, axis=1)
    else:
        below = trie.below.cpu().numpy()                                   # [L-1, K_0]
        need = (level0 >= floor[:, None]).astype(np.int64) @ below.T       # [n, L-1]
    need = -(-need // _WIDTH_STEP) * _WIDTH_STEP
    need = np.clip(need, np.asarray(base[1:], dtype=np.int64), np.asarray(trie.n_nodes[1:-1], dtype=np.int64))
    peak = need.max(1, initial=1)
    order = np.argsort(peak, kind="stable")
    chunks, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end - start + 1) * peak[order[end]] <= budget:
            end += 1
        rows = order[start:end]
        cap = max(int(peak[rows].max()), budget // len(rows)) if optimistic else None
        chunks.append((rows, cap))
        start = end
    return chunks


def constrained_topk(model, prompts: list[list[int]], trie: SIDTrie, *, k: int,
                     beam_width: int | None = None, batch_size: int = 64,
                     pad_token_id: int | None, exact: bool = True) -> DecodeResult:
    """Top-k catalogue items per prompt by sequence log-probability, best first.

    model: HF causal LM (eval mode; its device and dtype are used); prompts: token ids
    per row (any lengths, left-padded internally; rows are grouped by length and results
    come back in input order); trie: catalogue (moved to the model's device if needed);
    beam_width: beams per level in the first pass (default k; may be < k, rows then
    fail the certificate and are widened); batch_size: rows per first-pass forward
    (widening passes keep rows x beams per step within 4 x batch_size x beam_width);
    pad_token_id: id used for padding (masked, so any id works; None -> 0); exact:
    widen rows that fail the certificate (False: plain beam search, uncertified rows
    counted in stats).

    Returns DecodeResult(items int64 [rows, k], scores float32 [rows, k], invalid,
    stats) with stats: rows, k, beam_width, batch_size, batches, certified_first_pass
    (rows), widened_rows, widen_rounds, full_fanout_rows, uncertified_rows (rows left
    uncertified: 0 when exact), max_widths (beams held per depth 1..L-1, all passes),
    prefill_tokens and decode_tokens (query tokens through the model, all passes).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    beam_width = int(k if beam_width is None else beam_width)
    if beam_width < 1 or batch_size < 1:
        raise ValueError("beam_width and batch_size must be >= 1")
    prompts = [list(map(int, p)) for p in prompts]
    if any(len(p) == 0 for p in prompts):
        raise ValueError(f"empty prompt at row {next(i for i, p in enumerate(prompts) if not p)}")
    _check_model(model)
    device, _ = _model_device_dtype(model)
    trie = trie.to(device)
    pad = 0 if pad_token_id is None else int(pad_token_id)
    n, L = len(prompts), trie.levels
    k_eff = min(k, trie.n_items)
    base = [1] + [min(beam_width, trie.n_nodes[d]) for d in range(1, L)]

    items = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    stats = {"rows": n, "k": k, "beam_width": beam_width, "batch_size": batch_size, "batches": 0,
             "certified_first_pass": 0, "widened_rows": 0, "widen_rounds": 0, "full_fanout_rows": 0,
             "uncertified_rows": 0, "max_widths": base[1:], "prefill_tokens": 0, "decode_tokens": 0}
    if n == 0:
        return DecodeResult(items, scores, 0, stats)

    def run(rows: np.ndarray, floor: np.ndarray | None, widths: list[int], max_width: int | None = None) -> _Pass:
        ids, attn = _collate([prompts[r] for r in rows], pad, device)
        f = None if floor is None else torch.as_tensor(floor, dtype=torch.float32, device=device)
        res = _decode_batch(model, ids, attn, trie, k_eff=k_eff, widths=widths, floor=f, max_width=max_width)
        stats["prefill_tokens"] += int(ids.numel())
        stats["decode_tokens"] += res.decode_tokens
        stats["max_widths"] = [max(a, b) for a, b in zip(stats["max_widths"], res.widths)]
        return res

    # First pass: fixed beams, rows grouped by prompt length (less padding). Results
    # stay on the device until the one synchronisation after the loop.
    order = np.argsort([-len(p) for p in prompts], kind="stable")
    passes = []
    for s in range(0, n, batch_size):
        rows = order[s:s + batch_size]
        passes.append((rows, run(rows, None, base)))
        stats["batches"] += 1
    row_ids = np.concatenate([r for r, _ in passes])
    items[row_ids, :k_eff] = torch.cat([p.items for _, p in passes]).cpu().numpy()
    scores[row_ids, :k_eff] = torch.cat([p.scores for _, p in passes]).cpu().numpy()
    certified = np.zeros(n, dtype=bool)
    certified[row_ids] = torch.cat([p.certified for _, p in passes]).cpu().numpy()
    level0 = np.zeros((n, trie.codebook_sizes[0]), dtype=np.float32)
    level0[row_ids] = torch.cat([p.level0 for _, p in passes]).cpu().numpy()
    del passes
    stats["certified_first_pass"] = int(certified.sum())

    if exact:
        pending = np.flatnonzero(~certified)
        stats["widened_rows"] = int(pending.size)
        budget = _WIDEN_BUDGET_FACTOR * batch_size * beam_width
        eps = torch.finfo(_model_device_dtype(model)[1]).eps
        while pending.size:
            stats["widen_rounds"] += 1
            full = stats["widen_rounds"] > _GUIDED_ROUNDS
            kth = scores[pending, k_eff - 1].astype(np.float64)
            # floor a little below the k-th score: the re-decode's batch shapes round
            # differently, and the items found so far must stay inside the beams.
            floor = (np.full(pending.size, -np.inf) if full
                     else kth - 4 * eps * (1.0 + np.abs(kth))).astype(np.float32)
            if full:
                stats["full_fanout_rows"] += int(pending.size)
            optimistic = stats["widen_rounds"] == 1
            for chunk, cap in _widening_chunks(level0[pending], floor, trie, base, budget, optimistic):
                rows = pending[chunk]
                res = run(rows, floor[chunk], base, cap)
                items[rows, :k_eff] = res.items.cpu().numpy()
                scores[rows, :k_eff] = res.scores.cpu().numpy()
                certified[rows] = res.certified.cpu().numpy()
                level0[rows] = res.level0.cpu().numpy()
            pending = np.flatnonzero(~certified)
            if full:
                break  # nothing was pruned; any row still failing has non-finite scores
    stats["uncertified_rows"] = int((~certified).sum())

    head = items[:, :k_eff]
    bad = (head < 0) | (head >= trie.n_items)
    dup = np.sort(head, 1)
    repeats = int(((dup[:, 1:] == dup[:, :-1]) & (dup[:, 1:] >= 0)).sum())
    return DecodeResult(items=items, scores=scores, invalid=int(bad.sum()) + repeats, stats=stats)


@torch.inference_mode()
def score_all_items(model, prompt: list[int], trie: SIDTrie, batch_size: int = 256) -> np.ndarray:
    """Brute force: float32 [n_items], each item's sequence log-probability after
    `prompt`, by teacher forcing prompt + the item's L tokens (no cache, no padding)."""
    device, _ = _model_device_dtype(model)
    trie = trie.to(device)
    L = trie.levels
    p = torch.as_tensor(list(prompt), dtype=torch.long, device=device)
    out = np.empty(trie.n_items, dtype=np.float32)
    for s in range(0, trie.n_items, batch_size):
        toks = trie.item_tokens[s:s + batch_size]                         # [b, L]
        ids = torch.cat([p.expand(toks.shape[0], -1), toks], 1)
        logits = model(input_ids=ids, logits_to_keep=L + 1).logits[:, :L].float()  # predicts the L tokens
        lp = logits.log_softmax(-1).gather(2, toks[..., None])[..., 0]
        out[s:s + toks.shape[0]] = lp.sum(1).cpu().numpy()
    return out


__all__ = ["DecodeResult", "constrained_topk", "score_all_items"]
