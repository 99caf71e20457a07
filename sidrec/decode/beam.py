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
3. Rescoring: the pass returns its best k + max(4, k/4) leaves per row, not k; each is
   scored again by teacher forcing its SID tokens through a float32 model of the same
   weights (one forward per chunk, each candidate a separate branch of the tree mask),
   and the row's list is the best k of those float32 scores (see "Guarantee").
4. Certificate: every log-probability is <= 0, so a pruned prefix's score bounds every
   completion below it (a leaf not returned is a pruned prefix too). If the best
   pruned prefix's search score + tol <= the row's k-th rescored score, nothing pruned
   can beat the list: it is exact. This is the one host synchronisation of the
   batched pass.
5. Widening: rows that fail are decoded again with beams wide enough to hold, at
   every level, every prefix whose search score is >= the row's k-th rescored score
   from the pass before - tol (that k-th score is a lower bound of the true k-th,
   because it belongs to real items), and every such leaf is returned and rescored.
   Such a pass is exact by construction and is checked by the same certificate. The
   first widening round packs many rows into each forward: it sizes them by what
   depth 1 needs (known exactly from the level-0 scores) and caps deeper levels to fit
   the token budget; a row the cap cuts short fails its certificate and goes on to
   rounds sized by the trie's (loose, safe) bound. Rows failing again (the cap, or a
   wider pass whose candidates showed a larger gap and so a larger tol) get further
   guided passes, and after `_GUIDED_ROUNDS` a pass with no pruning at all (the beam
   covers each level's full fan-out and every leaf is rescored), which is trivially
   certified. Guided widths replace the doubling schedule (B, 2B, 4B, ...): one pass
   with exactly the needed width per level costs fewer forward tokens than the
   doublings that lead to the same width, and a level needing few beams is not
   inflated to the widest level's count.

Guarantee
---------
What is exact (exact=True, with rescoring, the default for a bf16/fp16 model; a
float32 model's search pass is float32 already, see below): the returned list is the true
top K of the float32 scores of the model's weights (weights upcast exactly, float32
activations and log-softmax), up to float32 rounding, and the returned scores are
those float32 scores. The rescoring sees a row's prompt and one candidate at a time,
so the batch's other rows, their padding and the batch size change a score only by
float32 rounding (tests: <= 1e-5 between batch shapes, <= 1e-4 from brute-force
float32 scoring of the full sequence), and they change a list only where two items
tie within that rounding.

What that rests on: the search pass runs in the model's dtype, so a pruned prefix's
bound is the reduced-precision score, not the float32 one. The certificate's margin
tol covers that rounding: tol = max(`tolerance`, 2 x the largest |search score -
float32 score| observed on the row's own rescored candidates), `tolerance` defaulting
to 1e-2 for a bf16/fp16 model and 1e-4 for a float32 one. A candidate's score sums L
rounded log-probabilities, a pruned prefix's at most as many, so its rounding is
expected to stay within the candidates' worst case; x 2 is the safety factor.

What is NOT guaranteed: in bf16/fp16, an item below a pruned prefix whose
reduced-precision bound is lower than its float32 score by more than tol can be
missing from the list. Nothing bounds that error a priori (a bf16 forward's hidden
states, not just its logits, differ from float32 ones); tol is measured, not proven.
bench/decode_bound.py checks lists against brute-force float32 scoring of every item
on a trained model and bench/RESULTS.md reports what it found. For a float32 model the
search pass's rounding is ~1e-6, so rescoring is off by default and the certificate
uses the search's own scores with a margin of a few float32 eps: the list is exact up
to float32 rounding (rescore=True forces the rescoring, with tol >= 1e-4). rescore=False certifies the search's own scores instead: exact only
up to the search's rounding, which depends on batch shape (scores of one item
differed by up to 0.68 on a trained Industrial model in bf16); exact=False is plain
beam search.

Requirements on the model: a decoder-only HF model whose forward accepts
`position_ids`, `past_key_values`, `logits_to_keep` and a 4D additive float attention
mask (Llama, Qwen2, Mistral, ... with attn_implementation "sdpa" or "eager").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

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
# Rescoring (see "Guarantee"): the first pass hands k + max(_RESCORE_MARGIN_MIN,
# _RESCORE_MARGIN x k) leaves per row to it: the list and the items just below it,
# which the search's rounding may have ranked too low.
_RESCORE_MARGIN = 0.25
_RESCORE_MARGIN_MIN = 4
# A row's certificate margin: at least this multiple of the largest |search - rescored|
# seen on its candidates (a pruned prefix's own rounding is unseen; its partial sum has
# at most as many terms as a candidate's), and at least the tolerance for the dtype.
_NOISE_FACTOR = 2.0
_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-8}
_TOLERANCE_REDUCED = 1e-2
# A rescoring forward's float32 logits [rows, candidates x (L-1) + 1, vocab] and its
# attention scores [rows, heads, P + Q, P + Q] each stay under this (512 MB).
_RESCORE_ELEMENTS = 1 << 27


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
    k_eff: int = 0           # items[:, :k_eff] is the row's list (more columns: rescoring candidates)
    # after rescoring (_rescored): scores are float32 rescorings, and
    tol: torch.Tensor | None = None   # float32 [R]: margin the certificate demands
    gap: torch.Tensor | None = None   # float32 [R]: max |search - rescored| on the row's candidates
    rescored: torch.Tensor | int = 0  # candidates rescored (a device scalar: read at the host sync)

    @property
    def kth(self) -> torch.Tensor:
        return self.scores[:, self.k_eff - 1]

    @property
    def certified(self) -> torch.Tensor:
        """bool [R]: no pruned prefix can hold an item scoring above the k-th (by more
        than `tol`, the rounding the search may have made, when rescored)."""
        if self.tol is None:
            return self.pruned <= self.kth
        return self.pruned + self.tol <= self.kth


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


def _collate(prompts, pad_token_id: int, device, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad to the longest prompt (or to `length`, if longer) -> input_ids int64 [R, P],
    attention_mask bool [R, P] on `device`."""
    P = max([len(p) for p in prompts] + [length or 0])
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


def _prefill_mask(attn: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """bool [R, P] (left padding) -> additive float [R, 1, P, P]: each real token sees the
    real tokens up to itself; a pad query sees itself only (no empty softmax row; pad
    positions are never read: their keys are masked for every real query)."""
    R, P = attn.shape
    causal = torch.ones(P, P, dtype=torch.bool, device=attn.device).tril()
    see = causal & attn[:, None, :]
    see = see | torch.eye(P, dtype=torch.bool, device=attn.device)
    return torch.zeros(R, 1, P, P, dtype=dtype, device=attn.device).masked_fill_(~see[:, None], torch.finfo(dtype).min)


@torch.inference_mode()
def _decode_batch(model, ids: torch.Tensor, attn: torch.Tensor, trie: SIDTrie, *, k_eff: int,
                  widths: list[int], floor: torch.Tensor | None = None, max_width: int | None = None,
                  n_out: int | None = None, prefill_4d: bool = False) -> _Pass:
    """Beam-decode R left-padded rows: ids int64 [R, P], attn bool [R, P].

    widths[d] (d = 1..L-1): beams kept at depth d; n_out (>= k_eff, default k_eff):
    leaves returned per row, best first (the rescoring's candidates). With `floor`
    (float32 [R]) the width at each depth, and n_out, grow to hold every candidate
    scoring >= its row's floor (one host sync per level; used only for widening
    passes), but not beyond `max_width`: what that cuts off counts as pruned, so the
    certificate stays sound. `pruned` includes the best leaf not returned.
    prefill_4d: give the prefill our own 4D mask (causal, padding masked) instead of the
    2D padding mask HF turns into one, whose making may read the mask on the host: a CUDA
    graph capture (sidrec.decode.graphs) allows no host synchronisation.
    """
    R, P = ids.shape
    L = trie.levels
    n_out = k_eff if n_out is None else max(k_eff, n_out)
    dev = ids.device
    dtype = _model_device_dtype(model)[1]
    neg = torch.finfo(dtype).min  # additive mask value, as HF uses
    ninf = float("-inf")

    pos = (attn.long().cumsum(1) - 1).clamp(min=0)
    plen = attn.sum(1)                                                     # [R]
    out = model(input_ids=ids, attention_mask=_prefill_mask(attn, dtype) if prefill_4d else attn.long(),
                position_ids=pos, use_cache=True, logits_to_keep=1)
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
            if floor is not None:  # widening pass: return every leaf that may still matter
                # (finite ones only: with floor -inf, every leaf of the catalogue)
                need = int(((cand >= floor[:, None]) & (cand > ninf)).sum(1).max().item())
                n_out = max(n_out, -(-need // _WIDTH_STEP) * _WIDTH_STEP)
                if max_width is not None:
                    n_out = max(k_eff, min(n_out, max_width))
            top, idx = cand.topk(min(n_out + 1, cand.shape[1]), dim=1)
            if top.shape[1] > n_out:  # the best leaf not returned bounds every other one
                pruned = torch.maximum(pruned, top[:, n_out])
                top, idx = top[:, :n_out], idx[:, :n_out]
            leaf = torch.where(top > ninf, child.gather(1, idx), -1)
            items, scores = trie.items_of(leaf), top
            if scores.shape[1] < n_out:  # fewer candidates than n_out: a narrow beam or catalogue
                pad = n_out - scores.shape[1]
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
                 decode_tokens=decode_tokens, k_eff=k_eff)


def reference_model(model):
    """The model the rescoring runs: `model` itself if it is float32, else a float32 copy
    (its weights upcast exactly; float32 activations are the point of the rescoring).
    A copy holds 4 bytes a parameter (540 MB for SmolLM2-135M) and reflects the weights
    at the time it is made: `constrained_topk` makes one per call unless given
    `reference=`; `Recommender` (fixed weights) makes one and keeps it."""
    if _model_device_dtype(model)[1] == torch.float32:
        return model
    import copy
    return copy.deepcopy(model).to(torch.float32)


class _Float32Matmul:
    """Full float32 matmuls (no TF32) for a block, restored afterwards."""

    def __enter__(self):
        self.before = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")

    def __exit__(self, *exc):
        torch.set_float32_matmul_precision(self.before)


@torch.inference_mode()
def _rescore(model, ids: torch.Tensor, attn: torch.Tensor, item_tokens: torch.Tensor,
             valid: torch.Tensor) -> torch.Tensor:
    """Teacher-forced sequence log-probabilities of each row's candidates.

    ids int64 [R, P], attn bool [R, P] (left-padded prompts); item_tokens int64
    [R, C, L] (each candidate's SID tokens); valid bool [R, C] -> float32 [R, C], -inf
    where not valid. One forward: the prompt, then every candidate's first L-1 tokens
    as queries of its own row that see the prompt and that candidate's earlier tokens
    (the beam steps' tree attention, with each candidate a separate branch). `model`
    should be float32 (`reference_model`): a row's result then depends on the other
    rows and on padding only through float32 rounding.
    """
    R, P = ids.shape
    C, L = item_tokens.shape[1:]
    dev = ids.device
    dtype = _model_device_dtype(model)[1]
    neg = torch.finfo(dtype).min
    Q = C * (L - 1)                                                          # candidate query tokens
    pos = (attn.long().cumsum(1) - 1).clamp(min=0)
    plen = attn.sum(1)
    step = torch.arange(L - 1, device=dev).repeat(C)                        # [Q]: level of each query
    branch = torch.arange(C, device=dev).repeat_interleave(L - 1)           # [Q]: its candidate
    seq = torch.cat([ids, item_tokens[:, :, :L - 1].reshape(R, Q)], 1)
    position = torch.cat([pos, plen[:, None] + step], 1)
    see = torch.zeros(R, P + Q, P + Q, dtype=torch.bool, device=dev)
    see[:, :P, :P] = torch.ones(P, P, dtype=torch.bool, device=dev).tril() & attn[:, None, :]
    see[:, P:, :P] = attn[:, None, :]
    see[:, P:, P:] = (branch[:, None] == branch[None, :]) & (step[:, None] >= step[None, :])
    see[:, :P].diagonal(dim1=1, dim2=2).fill_(True)  # pad queries see themselves: no empty softmax row
    mask = torch.zeros(see.shape, dtype=dtype, device=dev).masked_fill_(~see, neg)[:, None]
    with _Float32Matmul():
        logits = model(input_ids=seq, attention_mask=mask, position_ids=position,
                       logits_to_keep=Q + 1).logits                          # [R, Q + 1, V]
    # level 0 from the last prompt position, level d from candidate token d-1; summed in
    # level order, as the beam steps sum them
    score = torch.log_softmax(logits[:, 0], -1, dtype=torch.float32).gather(1, item_tokens[:, :, 0])  # [R, C]
    if L > 1:
        rest = torch.log_softmax(logits[:, 1:], -1, dtype=torch.float32).reshape(R, C, L - 1, -1)
        rest = rest.gather(3, item_tokens[:, :, 1:, None])[..., 0]        # [R, C, L-1]
        for d in range(L - 1):
            score = score + rest[:, :, d]
    return torch.where(valid, score, float("-inf"))


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


def _rescore_chunk(R: int, C: int, P: int, L: int, V: int, heads: int, max_rows: int) -> tuple[int, int]:
    """(rows, candidates) per `_rescore` forward. Its float32 logits, rows x (Q + 1) x V,
    and its attention scores, rows x heads x (P + Q)^2 (Q = candidates x (L - 1) query
    tokens; eager and CPU SDPA materialise them), each stay within _RESCORE_ELEMENTS,
    except that one candidate of one row always runs."""
    per = max(1, L - 1)
    queries = min(_RESCORE_ELEMENTS // V - 1, math.isqrt(_RESCORE_ELEMENTS // heads) - P)
    group = max(1, min(C, queries // per))
    Q = group * (L - 1)
    size = max((Q + 1) * V, heads * (P + Q) ** 2)
    return max(1, min(max_rows, R, _RESCORE_ELEMENTS // size)), group


@torch.inference_mode()
def _rescored(res: _Pass, ref, ids: torch.Tensor, attn: torch.Tensor, trie: SIDTrie, *,
              tolerance: float, max_rows: int) -> _Pass:
    """`res` with its candidates (every column of res.items) rescored by `_rescore` with
    `ref`, reordered by those scores and cut to k_eff; `tol` = max(tolerance,
    _NOISE_FACTOR x the row's largest |search - rescored| on its candidates)."""
    R, C = res.items.shape
    V = int(ref.get_output_embeddings().weight.shape[0])
    heads = int(getattr(ref.config, "num_attention_heads", 1) or 1)
    rows, group = _rescore_chunk(R, C, ids.shape[1], trie.levels, V, heads, max_rows)
    valid = res.items >= 0
    tokens = trie.item_tokens[res.items.clamp(min=0)]                          # [R, C, L]
    out = torch.empty(R, C, dtype=torch.float32, device=ids.device)
    for r in range(0, R, rows):
        for c in range(0, C, group):
            out[r:r + rows, c:c + group] = _rescore(ref, ids[r:r + rows], attn[r:r + rows],
                                                    tokens[r:r + rows, c:c + group],
                                                    valid[r:r + rows, c:c + group])
    gap = torch.where(valid, (out - res.scores).abs(), 0.0).amax(1)          # [R]
    order = out.argsort(dim=1, descending=True, stable=True)[:, :res.k_eff]
    return replace(res, items=res.items.gather(1, order), scores=out.gather(1, order),
                   tol=torch.clamp(_NOISE_FACTOR * gap, min=tolerance), gap=gap,
                   rescored=valid.sum())


def constrained_topk(model, prompts: list[list[int]], trie: SIDTrie, *, k: int,
                     beam_width: int | None = None, batch_size: int = 64,
                     pad_token_id: int | None, exact: bool = True, rescore: bool | None = None,
                     tolerance: float | None = None, reference=None) -> DecodeResult:
    """Top-k catalogue items per prompt by sequence log-probability, best first.

    model: HF causal LM (eval mode; its device and dtype are used); prompts: token ids
    per row (any lengths, left-padded internally; rows are grouped by length and results
    come back in input order); trie: catalogue (moved to the model's device if needed);
    beam_width: beams per level in the first pass (default k; may be < k, rows then
    fail the certificate and are widened); batch_size: rows per first-pass forward
    (widening passes keep rows x beams per step within 4 x batch_size x beam_width);
    pad_token_id: id used for padding (masked, so any id works; None -> 0); exact:
    widen rows that fail the certificate (False: plain beam search, uncertified rows
    counted in stats, search-pass scores, no rescoring); rescore (with exact): score
    the candidates again in float32 and certify against those scores, as the module
    docstring's "Guarantee" says (False: the search pass's own scores and certificate,
    exact only up to the search's rounding; None, the default: rescore when the model
    is not float32/float64, whose search pass is float32 already); tolerance: the least margin the
    certificate demands between the k-th rescored score and every pruned bound
    (default 1e-4 for a float32 model, 1e-2 otherwise; each row raises it to
    _NOISE_FACTOR x the search-vs-rescore gap seen on its own candidates); reference:
    the float32 model to rescore with, the same weights as `model` on its device
    (default `reference_model(model)`: `model` itself if float32, else a float32 copy
    made for this call; a caller decoding many times with fixed weights passes one
    made once, as `Recommender` does).

    Returns DecodeResult(items int64 [rows, k], scores float32 [rows, k], invalid,
    stats) with stats: rows, k, beam_width, batch_size, batches, certified_first_pass
    (rows), widened_rows, widen_rounds, full_fanout_rows, uncertified_rows (rows left
    uncertified: 0 when exact), max_widths (beams held per depth 1..L-1, all passes),
    prefill_tokens and decode_tokens (query tokens through the model, all passes),
    rescored (whether scores are float32 rescorings), rescored_candidates (items
    rescored, all passes), max_score_gap (largest |search-pass score - rescored score|
    of any candidate, all passes: the search's rounding as observed) and
    max_tolerance (largest margin a row's certificate demanded).
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
    device, dtype = _model_device_dtype(model)
    trie = trie.to(device)
    pad = 0 if pad_token_id is None else int(pad_token_id)
    n, L = len(prompts), trie.levels
    k_eff = min(k, trie.n_items)
    base = [1] + [min(beam_width, trie.n_nodes[d]) for d in range(1, L)]
    if rescore is None:  # a float32 search pass rounds ~1e-6: rescoring would repeat it
        rescore = dtype not in _TOLERANCE
    rescore = bool(exact and rescore)
    if tolerance is None:
        tolerance = _TOLERANCE.get(dtype, _TOLERANCE_REDUCED)
    # first-pass leaves handed to the rescoring: the list and the items just below it
    n_out = min(trie.n_items, k_eff + max(_RESCORE_MARGIN_MIN, int(_RESCORE_MARGIN * k_eff))) if rescore else k_eff

    items = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    tol = np.zeros(n, dtype=np.float32)
    stats = {"rows": n, "k": k, "beam_width": beam_width, "batch_size": batch_size, "batches": 0,
             "certified_first_pass": 0, "widened_rows": 0, "widen_rounds": 0, "full_fanout_rows": 0,
             "uncertified_rows": 0, "max_widths": base[1:], "prefill_tokens": 0, "decode_tokens": 0,
             "rescored": rescore, "rescored_candidates": 0, "max_score_gap": 0.0, "max_tolerance": 0.0}
    if n == 0:
        return DecodeResult(items, scores, 0, stats)
    ref = None
    if rescore:
        ref = reference_model(model) if reference is None else reference

    def run(rows: np.ndarray, floor: np.ndarray | None, widths: list[int], max_width: int | None = None) -> _Pass:
        ids, attn = _collate([prompts[r] for r in rows], pad, device)
        f = None if floor is None else torch.as_tensor(floor, dtype=torch.float32, device=device)
        res = _decode_batch(model, ids, attn, trie, k_eff=k_eff, widths=widths, floor=f, max_width=max_width,
                            n_out=n_out)
        stats["prefill_tokens"] += int(ids.numel())
        stats["decode_tokens"] += res.decode_tokens
        stats["max_widths"] = [max(a, b) for a, b in zip(stats["max_widths"], res.widths)]
        if ref is None:
            return replace(res, items=res.items[:, :k_eff], scores=res.scores[:, :k_eff])
        return _rescored(res, ref, ids, attn, trie, tolerance=tolerance, max_rows=batch_size)

    def keep(rows: np.ndarray, res: list[_Pass]) -> None:
        """Copy passes' results (rows in order) to the host arrays: the one host sync."""
        items[rows, :k_eff] = torch.cat([p.items for p in res]).cpu().numpy()
        scores[rows, :k_eff] = torch.cat([p.scores for p in res]).cpu().numpy()
        certified[rows] = torch.cat([p.certified for p in res]).cpu().numpy()
        level0[rows] = torch.cat([p.level0 for p in res]).cpu().numpy()
        if ref is not None:
            tol[rows] = torch.cat([p.tol for p in res]).cpu().numpy()
            stats["rescored_candidates"] += sum(int(p.rescored) for p in res)
            gap = float(torch.cat([p.gap for p in res]).max())
            stats["max_score_gap"] = max(stats["max_score_gap"], gap)
            stats["max_tolerance"] = max(stats["max_tolerance"], float(tol[rows].max()))

    # First pass: fixed beams, rows grouped by prompt length (less padding). Results
    # stay on the device until the one synchronisation after the loop.
    certified = np.zeros(n, dtype=bool)
    level0 = np.zeros((n, trie.codebook_sizes[0]), dtype=np.float32)
    order = np.argsort([-len(p) for p in prompts], kind="stable")
    passes = []
    for s in range(0, n, batch_size):
        rows = order[s:s + batch_size]
        passes.append((rows, run(rows, None, base)))
        stats["batches"] += 1
    keep(np.concatenate([r for r, _ in passes]), [p for _, p in passes])
    del passes
    stats["certified_first_pass"] = int(certified.sum())

    if exact:
        pending = np.flatnonzero(~certified)
        stats["widened_rows"] = int(pending.size)
        budget = _WIDEN_BUDGET_FACTOR * batch_size * beam_width
        eps = torch.finfo(dtype).eps
        full_widths = [1] + [trie.n_nodes[d] for d in range(1, L)]
        while pending.size:
            stats["widen_rounds"] += 1
            full = stats["widen_rounds"] > _GUIDED_ROUNDS
            kth = scores[pending, k_eff - 1].astype(np.float64)
            # Hold everything whose search score may beat the k-th found so far. With
            # rescoring, kth is a rescored score and tol bounds the search's rounding;
            # without it, a little margin: the re-decode's batch shapes round differently
            # and the items found so far must stay inside the beams.
            margin = tol[pending] if ref is not None else 4 * eps * (1.0 + np.abs(kth))
            floor = (kth - margin).astype(np.float32)
            if full:
                # no pruning at all: every prefix is held and every leaf is returned (and
                # rescored), so pruned is -inf and the certificate holds trivially
                stats["full_fanout_rows"] += int(pending.size)
                floor = np.full(pending.size, -np.inf, np.float32)
                chunks = _widening_chunks(level0[pending], floor, trie, full_widths, budget)
            else:
                chunks = _widening_chunks(level0[pending], floor, trie, base, budget,
                                          optimistic=stats["widen_rounds"] == 1)
            for chunk, cap in chunks:
                rows = pending[chunk]
                keep(rows, [run(rows, floor[chunk], full_widths if full else base, cap)])
            pending = np.flatnonzero(~certified)
            if full:
                break  # nothing was pruned; any row still failing has non-finite scores
    stats["uncertified_rows"] = int((~certified).sum())
    del ref

    return DecodeResult(items=items, scores=scores, invalid=invalid_entries(items[:, :k_eff], trie.n_items),
                        stats=stats)


def invalid_entries(head: np.ndarray, n_items: int) -> int:
    """Entries of the lists `head` [rows, k] that are no catalogue item or repeat an item of
    their row (a decoder's own check: 0 by construction)."""
    bad = (head < 0) | (head >= n_items)
    dup = np.sort(head, 1)
    repeats = int(((dup[:, 1:] == dup[:, :-1]) & (dup[:, 1:] >= 0)).sum())
    return int(bad.sum()) + repeats


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


__all__ = ["DecodeResult", "constrained_topk", "reference_model", "score_all_items"]
