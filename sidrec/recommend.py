"""Histories -> top-K catalogue items with a fine-tuned LM: the one path from a user's
item history to ranked items (evaluation, benchmarks, and later serving and RL).

The prompt comes from `prompts.PromptBuilder.eval_prompt` (the training prompt), the
SID tokens are looked up in the model's own tokenizer, and `decode.constrained_topk`
walks the SID trie, so every returned item is a catalogue item.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .decode.beam import DecodeResult, constrained_topk
from .decode.trie import SIDTrie
from .lm.prompts import PromptBuilder, encode_prompt
from .sid import code_token


def level_token_ids(tokenizer, codes: np.ndarray) -> list[np.ndarray]:
    """Per level, code -> vocabulary id of its token (-1 for codes no item uses)."""
    out = []
    for level in range(codes.shape[1]):
        size = int(codes[:, level].max()) + 1
        ids = np.full(size, -1, dtype=np.int64)
        for code in np.unique(codes[:, level]):
            tok = tokenizer.convert_tokens_to_ids(code_token(level, code))
            if tok is None or tok == tokenizer.unk_token_id:
                raise ValueError(f"the model's tokenizer has no token {code_token(level, code)}")
            ids[code] = tok
        out.append(ids)
    return out


class Recommender:
    """A fine-tuned model + its tokenizer over a catalogue (`codes[i]`: item i's SID
    codes, `titles[i]`: its title). The trie lives on the model's device."""

    def __init__(self, model, tokenizer, codes: np.ndarray, titles: Sequence[str]):
        self.model, self.tokenizer = model, tokenizer
        self.builder = PromptBuilder(codes, titles)
        device = next(model.parameters()).device
        self.trie = SIDTrie.build(codes, level_token_ids(tokenizer, codes), device=device)

    def prompts(self, histories: Iterable[Sequence[int]]) -> list[list[int]]:
        return [encode_prompt(self.tokenizer, self.builder.eval_prompt(h)) for h in histories]

    def top_k(self, histories: Iterable[Sequence[int]], k: int, *, beam_width: int = 50,
              batch_size: int = 64, exact: bool = True) -> DecodeResult:
        """Top-k items per history, best first (see `constrained_topk` for `exact`)."""
        return constrained_topk(self.model, self.prompts(histories), self.trie, k=k,
                                beam_width=max(k, beam_width), batch_size=batch_size,
                                pad_token_id=self.tokenizer.pad_token_id, exact=exact)
