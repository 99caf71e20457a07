"""GRPO rollouts that are always catalogue items: TRL's `rollout_func` hook over our
trie decoder.

TRL hands the hook the process's slice of prompts, each row repeated `num_generations`
(G) times in a row; it expects one completion per row. A group (G consecutive rows of
one sample) is decoded once:

  beam    the G best items of a trie-constrained beam search of width G (MiniOneRec's
          rollout; deterministic, so a group is the model's current top G)
  sample  G draws from the trie-masked distribution at `temperature`
          (decode.sample_items); ranked by sequence log-probability for `rank`

A completion is the item's L SID tokens and eos: exactly what SFT trained the model to
write after this prompt. Besides the ids, each row carries its rollout's item id, its
group and its rank in the group, which the rewards read (rl/rewards.py).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..decode.beam import constrained_topk
from ..decode.sample import sample_items
from ..decode.trie import SIDTrie
from ..lm.prompts import encode_prompt

ROLLOUTS = ("beam", "sample")


@contextlib.contextmanager
def decoding(model):
    """The model in eval mode (no dropout) and outside the trainer's autocast (the trie
    decoder builds its attention mask in the weights' dtype, which autocast would not
    match), restored afterwards."""
    was_training = model.training
    model.eval()
    device_type = next(model.parameters()).device.type
    try:
        with torch.autocast(device_type=device_type, enabled=False):
            yield model
    finally:
        model.train(was_training)


@dataclass
class GroupRollout:
    """Callable as TRL's `rollout_func(prompts, trainer)`; also usable on its own with
    `decode(model, prompts)` (tests, benchmarks). `seconds` accumulates the time spent
    decoding (the rollout share of a step)."""
    tokenizer: object
    trie: SIDTrie
    num_generations: int
    kind: str = "beam"
    temperature: float = 1.0
    batch_size: int = 64
    seed: int = 0
    seconds: float = 0.0
    calls: int = 0
    _generator: torch.Generator | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.kind not in ROLLOUTS:
            raise ValueError(f"rollout must be one of {list(ROLLOUTS)}, got {self.kind!r}")
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be >= 2, got {self.num_generations}")
        if self.trie.n_items < self.num_generations and self.kind == "beam":
            raise ValueError(f"beam rollouts need num_generations ({self.num_generations}) <= the "
                             f"catalogue's {self.trie.n_items} items")

    def groups(self, prompts: list[str]) -> list[str]:
        """One prompt per group of G rows; ValueError if the rows do not come in groups."""
        G = self.num_generations
        if len(prompts) % G:
            raise ValueError(f"rollout got {len(prompts)} rows, not a multiple of num_generations={G}")
        heads = prompts[::G]
        for g, head in enumerate(heads):
            if any(p != head for p in prompts[g * G:(g + 1) * G]):
                raise ValueError(f"rows {g * G}..{(g + 1) * G - 1} are not one prompt repeated "
                                 f"{G} times (TRL's grouping changed?)")
        return heads

    def decode(self, model, heads: list[str]) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
        """(prompt ids per group, items int [groups, G], ranks int [groups, G])."""
        G = self.num_generations
        prompt_ids = [encode_prompt(self.tokenizer, p) for p in heads]
        with decoding(model):
            if self.kind == "beam":
                result = constrained_topk(model, prompt_ids, self.trie, k=G, beam_width=G,
                                          batch_size=self.batch_size, pad_token_id=self.tokenizer.pad_token_id,
                                          exact=False)
                if result.invalid:
                    raise RuntimeError(f"{result.invalid} beam rollouts are not catalogue items")
                items = result.items
                ranks = np.broadcast_to(np.arange(G), items.shape).copy()
            else:
                device = next(model.parameters()).device
                if self._generator is None or self._generator.device != device:
                    self._generator = torch.Generator(device=device).manual_seed(self.seed)
                result = sample_items(model, prompt_ids, self.trie, n=G, temperature=self.temperature,
                                      pad_token_id=self.tokenizer.pad_token_id, generator=self._generator,
                                      batch_size=max(1, self.batch_size // G))
                items = result.items
                ranks = np.argsort(np.argsort(-result.scores, axis=1, kind="stable"), axis=1)
        return prompt_ids, items, ranks

    def __call__(self, prompts: list[str], trainer) -> dict:
        start = time.perf_counter()
        heads = self.groups(list(prompts))
        model = trainer.accelerator.unwrap_model(trainer.model)
        prompt_ids, items, ranks = self.decode(model, heads)
        G = self.num_generations
        eos = self.tokenizer.eos_token_id
        tokens = self.trie.item_tokens.cpu().numpy()
        flat_items = items.reshape(-1)
        out = {
            "prompt_ids": [prompt_ids[g] for g in range(len(heads)) for _ in range(G)],
            "completion_ids": [tokens[i].tolist() + [eos] for i in flat_items],
            "logprobs": None,   # TRL computes the old policy's log-probabilities itself
            "rollout_item": flat_items.tolist(),
            "rollout_group": np.repeat(np.arange(len(heads)), G).tolist(),
            "rollout_rank": ranks.reshape(-1).tolist(),
        }
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out
