"""SASRec as a teacher for SFT: soft targets for every SID token the LM is trained on.

Why: on dense interaction data (ml-100k) the LM learns the next item from one hard label
per position, while the pipeline's own SASRec, trained on the same rows, ranks better
(bench/RESULTS.md, the goal table). Distillation hands the LM SASRec's whole
distribution over the catalogue at each position, a far richer signal per example, and
the LM stays a standalone generative model: the teacher is used in training only.

The LM writes an item as L code tokens, so SASRec's item distribution P(i | history) is
turned into one distribution per level, each conditioned on the target's true codes
before it, as teacher forcing feeds them:

    level l:  q_l(c) = sum of P(i) over items i whose codes 0..l-1 are the target's and
                       whose code l is c, normalised over those items

A training row (history h_1..h_n, target t) is the window h_1..h_n, t; each item of it
whose SID tokens carry a loss (every item after the first with `history_loss`, else the
target alone) gets the teacher's view from the items before it in the window, which is
exactly the history the LM sees at those tokens.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..sid import code_token


def level_distributions(probs: torch.Tensor, targets: torch.Tensor, codes: torch.Tensor,
                        codebook: int) -> torch.Tensor:
    """Item probabilities `[R, n_items]` and each row's target item `[R]` -> the per-level
    code distributions `[R, L, codebook]` (see the module's docstring). `codes` int64
    `[n_items, L]`. Rows where the target's prefix holds no probability (possible only
    after underflow) fall back to the target's own code."""
    rows, levels = len(targets), codes.shape[1]
    out = torch.zeros(rows, levels, codebook, dtype=torch.float32, device=probs.device)
    same_prefix = torch.ones(rows, codes.shape[0], dtype=torch.bool, device=probs.device)
    target_codes = codes[targets]                                             # [R, L]
    for level in range(levels):
        mass = probs * same_prefix                                            # [R, n_items]
        out[:, level].index_add_(1, codes[:, level], mass)
        total = out[:, level].sum(1, keepdim=True)
        empty = total.squeeze(1) <= 0
        if empty.any():
            out[empty, level, target_codes[empty, level]] = 1.0
            total = out[:, level].sum(1, keepdim=True)
        out[:, level] /= total
        same_prefix &= codes[:, level][None, :] == target_codes[:, level:level + 1]
    return out


def labelled_items(window_length: int, history_loss: bool) -> range:
    """Indices (in the window history + target) of the items whose SID tokens carry a
    loss: every item after the first with the history loss, else the target alone."""
    return range(1 if history_loss and window_length > 1 else window_length - 1, window_length)


@torch.no_grad()
def sasrec_soft_targets(model, histories: Sequence[Sequence[int]], targets: Sequence[int],
                        codes: np.ndarray, *, history_loss: bool, temperature: float = 1.0,
                        batch_size: int = 2048) -> list[np.ndarray]:
    """For each row, float16 `[m, L, C]`: the teacher's per-level distributions for the
    row's m labelled items (`labelled_items`), oldest first; C = the largest code + 1.

    `model`: a `sidrec.baselines.sasrec.SASRec` (eval mode, any device); each item's
    history is the window before it, cut to the model's `max_len` as SASRec reads it."""
    from ..baselines.sasrec import encode_histories

    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    codes = np.asarray(codes, dtype=np.int64)
    device = next(model.parameters()).device
    codes_t = torch.as_tensor(codes, device=device)
    codebook = int(codes.max()) + 1
    # One teacher query per labelled item: (row, its history, its item).
    owner, prefixes, items = [], [], []
    for row, (history, target) in enumerate(zip(histories, targets)):
        window = [int(i) for i in history] + [int(target)]
        for j in labelled_items(len(window), history_loss):
            owner.append(row)
            prefixes.append(window[:j])
            items.append(window[j])
    out = np.zeros((len(items), codes.shape[1], codebook), dtype=np.float16)
    was_training = model.training
    model.eval()
    for start in range(0, len(items), batch_size):
        seqs = encode_histories(prefixes[start:start + batch_size], model.n_items, model.max_len).to(device)
        probs = torch.softmax(model(seqs).float() / temperature, dim=1)
        chunk = torch.as_tensor(items[start:start + batch_size], device=device)
        out[start:start + len(chunk)] = level_distributions(probs, chunk, codes_t, codebook).cpu().numpy()
    model.train(was_training)
    bounds = np.searchsorted(np.asarray(owner, dtype=np.int64), np.arange(len(targets) + 1))
    return [out[bounds[r]:bounds[r + 1]] for r in range(len(targets))]


def level_token_ids(tokenizer, codes: np.ndarray) -> torch.Tensor:
    """int64 `[L, C]`: the token id of code c at level l (the tokenizer's SID tokens);
    codes a level never uses map to token 0, which the teacher gives no mass."""
    codes = np.asarray(codes)
    codebook = int(codes.max()) + 1
    ids = torch.zeros(codes.shape[1], codebook, dtype=torch.long)
    for level in range(codes.shape[1]):
        used = int(codes[:, level].max()) + 1
        ids[level, :used] = torch.as_tensor(
            tokenizer.convert_tokens_to_ids([code_token(level, c) for c in range(used)]))
    return ids


def soft_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor, levels: torch.Tensor,
                       token_ids: torch.Tensor) -> torch.Tensor:
    """Mean over the positions with a teacher (`levels >= 0`) of -sum_c q(c) log p(token_c),
    p the LM's softmax over its whole vocabulary at the position that predicts the token.

    `logits` `[B, k, V]` are the last k positions' (the collator's logits_to_keep);
    `soft_targets` `[B, W, C]` and `levels` `[B, W]` are indexed by the position of the
    predicted token, W the padded width, so position p's logit is `logits[:, p - 1 - (W - k)]`."""
    width, kept = levels.shape[1], logits.shape[1]
    offset = width - kept + 1                     # the first predicted position with a logit
    rows, positions = torch.nonzero(levels[:, offset:] >= 0, as_tuple=True)
    if not len(rows):
        return logits.sum() * 0.0
    positions = positions + offset
    log_p = torch.log_softmax(logits[rows, positions - offset].float(), dim=-1)        # [N, V]
    wanted = token_ids.to(logits.device)[levels[rows, positions]]                       # [N, C]
    q = soft_targets[rows, positions].float()
    return -(q * log_p.gather(1, wanted)).sum(1).mean()
