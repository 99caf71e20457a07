"""Histories -> top-K catalogue items with a fine-tuned LM: the one path from a user's
item history to ranked items (evaluation, benchmarks, and later serving and RL).

The prompt comes from `prompts.PromptBuilder.eval_prompt` (the training prompt, in the
format saved with the model: `prompts.PromptFormat`), the SID tokens are looked up in
the model's own tokenizer, and `decode.constrained_topk`
walks the SID trie, so every returned item is a catalogue item.

    rec = Recommender.from_artifacts("results/ml-100k/sft", "results/ml-100k/data/items.parquet",
                                     "results/ml-100k/sid.json", device="cuda")
    result = rec.top_k(histories, k=10)     # result.items [rows, 10], best first
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

from .data.tables import read_items
from .decode.beam import DecodeResult, constrained_topk, reference_model
from .decode.trie import SIDTrie
from .lm.base import load_causal_lm, resolve_device
from .lm.prompts import PromptBuilder, PromptFormat, encode_prompt
from .lm.vocab import level_token_ids
from .sid import read_sid_json


class Recommender:
    """A fine-tuned model + its tokenizer over a catalogue (`codes[i]`: item i's SID
    codes, `titles[i]`: its title).

    Attributes, public for stages that need more than `top_k` (an RL rollout samples
    with the model, constrained by the trie, from the same prompts):
      model, tokenizer  the causal LM (eval mode) and its tokenizer (SID tokens included)
      builder           the `PromptBuilder` of training: `eval_prompt(history)`,
                        `sid(item)`, `codes` (int [n_items, levels])
      trie              the catalogue's `SIDTrie` on the model's device: per depth, the
                        allowed next codes of each prefix (`child`) and their token ids
                        (`level_tokens`), leaf -> item (`leaf_item`), item -> its token
                        ids (`item_tokens`, e.g. to score a sampled SID as an item)
    """

    def __init__(self, model, tokenizer, codes: np.ndarray, titles: Sequence[str],
                 prompt_format: PromptFormat = PromptFormat()):
        """`prompt_format`: the one the model was trained on (`PromptFormat.read` of its
        folder; `from_artifacts` reads it)."""
        self.model, self.tokenizer = model, tokenizer
        self.builder = PromptBuilder(codes, titles, prompt_format=prompt_format)
        device = next(model.parameters()).device
        self.trie = SIDTrie.build(codes, level_token_ids(tokenizer, codes), device=device)
        self._reference, self._reference_of = None, None

    def reference(self):
        """The float32 model the exact decoder rescores with: `model` itself if float32,
        else a float32 copy made on first use and kept, so repeated calls (predict's
        splits, the server's batches) do not copy the weights each time. The copy is
        remade if `model` is replaced, moved or cast, but not if its weights are trained
        in place: a bf16 model being trained should decode with `constrained_topk`."""
        p = next(self.model.parameters())
        key = (id(self.model), p.device, p.dtype)
        if p.dtype == torch.float32:
            self._reference, self._reference_of = None, None  # never hold a copy we do not need
            return self.model
        if self._reference_of != key:
            self._reference = None  # free the old copy before making the new one
            self._reference, self._reference_of = reference_model(self.model), key
        return self._reference

    @classmethod
    def from_artifacts(cls, model_dir, items, sid, *, device: str | None = "cpu",
                       dtype=None) -> "Recommender":
        """The recommender of a pipeline's artifacts: `model_dir` a save_pretrained
        folder (e.g. sft/), `items` the items.parquet (titles), `sid` the sid.json of
        that catalogue. `device`: "cpu", "cuda", "cuda:N" (RuntimeError without CUDA)
        or None (CUDA when available); `dtype` (torch dtype or name): default bfloat16
        on CUDA (what predict has always decoded in there), float32 on the CPU (bf16
        matmuls on a CPU are slow or emulated). The prompt format is the model folder's.
        InputError naming the file for a missing or malformed artifact."""
        device = resolve_device(device)
        if dtype is None:
            dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
        items_table = read_items(items)
        codes = read_sid_json(sid, n_items=len(items_table))
        prompt_format = PromptFormat.read(model_dir)  # before the weights: a bad file fails fast
        model, tokenizer = load_causal_lm(model_dir, dtype=dtype, device=device)
        return cls(model, tokenizer, codes, items_table["title"].tolist(), prompt_format)

    def prompts(self, histories: Iterable[Sequence[int]]) -> list[list[int]]:
        """Prompt ids per history, exactly as training encoded them."""
        return [encode_prompt(self.tokenizer, self.builder.eval_prompt(h)) for h in histories]

    def top_k(self, histories: Iterable[Sequence[int]], k: int, *, beam_width: int = 50,
              batch_size: int = 64, exact: bool = True) -> DecodeResult:
        """Top-k items per history, best first (see `constrained_topk` for `exact`)."""
        return constrained_topk(self.model, self.prompts(histories), self.trie, k=k,
                                beam_width=max(k, beam_width), batch_size=batch_size,
                                pad_token_id=self.tokenizer.pad_token_id, exact=exact,
                                reference=self.reference() if exact else None)
