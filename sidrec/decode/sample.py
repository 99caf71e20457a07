"""Trie-masked sampling of semantic IDs: n catalogue items per prompt, drawn from the
model's own distribution restricted, level by level, to the prefixes the catalogue has.

At level d the next code is drawn from softmax(log p(code | prefix) / temperature) over
the codes the trie allows after the prefix (log p over the FULL vocabulary, as the beam
search scores), so every sample is a catalogue item by construction. Samples of one
prompt may repeat an item (GRPO's groups are draws, not a ranking).

Each prompt is repeated n times and decoded with the model's KV cache: a prefill, then
L - 1 one-token steps (the last level is read from the last step's logits).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .beam import _collate, _log_probs, _model_device_dtype
from .trie import SIDTrie


@dataclass
class SampleResult:
    """items int64 [rows, n]; scores float32 [rows, n]: each sample's sequence
    log-probability under the unmasked model (the beam search's score), so samples can
    be ranked like beams."""
    items: np.ndarray
    scores: np.ndarray


@torch.inference_mode()
def sample_items(model, prompts: list[list[int]], trie: SIDTrie, *, n: int, temperature: float = 1.0,
                 pad_token_id: int | None = None, generator: torch.Generator | None = None,
                 batch_size: int = 64) -> SampleResult:
    """`n` trie-constrained samples per prompt (token ids, any lengths). `temperature`
    > 0 divides the masked log-probabilities before sampling; `generator` (on the
    model's device) makes the draws reproducible; `batch_size` prompts per forward
    (each of them n rows)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    prompts = [list(map(int, p)) for p in prompts]
    if any(len(p) == 0 for p in prompts):
        raise ValueError(f"empty prompt at row {next(i for i, p in enumerate(prompts) if not p)}")
    device, _ = _model_device_dtype(model)
    trie = trie.to(device)
    pad = 0 if pad_token_id is None else int(pad_token_id)
    items = np.empty((len(prompts), n), dtype=np.int64)
    scores = np.empty((len(prompts), n), dtype=np.float32)
    for s in range(0, len(prompts), batch_size):
        rows = [p for p in prompts[s:s + batch_size] for _ in range(n)]
        ids, attn = _collate(rows, pad, device)
        got, score = _sample_batch(model, ids, attn, trie, temperature, generator)
        items[s:s + batch_size] = got.view(-1, n).cpu().numpy()
        scores[s:s + batch_size] = score.view(-1, n).cpu().numpy()
    return SampleResult(items, scores)


def _sample_batch(model, ids, attn, trie: SIDTrie, temperature: float, generator):
    R = ids.shape[0]
    dev = ids.device
    pos = (attn.long().cumsum(1) - 1).clamp(min=0)
    plen = attn.sum(1)
    mask = attn.long()
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
    node = torch.zeros(R, dtype=torch.long, device=dev)
    score = torch.zeros(R, dtype=torch.float32, device=dev)
    for d in range(trie.levels):
        if d > 0:
            token = trie.node_token[d][node]
            mask = torch.cat([mask, mask.new_ones(R, 1)], 1)
            out = model(input_ids=token[:, None], attention_mask=mask, position_ids=(plen + d - 1)[:, None],
                        past_key_values=out.past_key_values, use_cache=True)
        lp = _log_probs(out.logits[:, -1:], trie.level_tokens[d])[:, 0]     # [R, K_d]
        child = trie.child[d][node].long()                                    # [R, K_d]
        allowed = torch.where(child >= 0, lp / temperature, float("-inf"))
        code = torch.multinomial(torch.softmax(allowed, -1), 1, generator=generator)[:, 0]
        score = score + lp.gather(1, code[:, None])[:, 0]
        node = child.gather(1, code[:, None])[:, 0]
    return trie.items_of(node), score
