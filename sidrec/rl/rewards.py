"""Rewards of one rollout (a catalogue item) against its sample's own target item.

A reward never looks at the prompt text: each rollout carries the id of the row it was
drawn for (`target`, a dataset column) and its place in its group (`rollout_group`,
`rollout_rank`, from the rollout), so two rows with the same history and different
targets are each rewarded by their own target (MiniOneRec's reward looked the target
up in a dict keyed by prompt text: a repeated prompt got the last target written).

  hit     1 when the rollout is the target, else 0.
  rank    MiniOneRec's rank-aware penalty: in a group where some rollout hits, a wrong
          rollout at rank i (0 = best) gets -(1/log2(i+2)) / sum_j 1/log2(j+2) over the
          group's G ranks; the hit gets 0. A group with no hit gets 0 throughout, so on
          its own (and with `hit`) such a group has no learning signal.
  prefix  dense: the fraction of the target's SID levels that the rollout's SID shares
          from the first level on (1 for the target itself). Rollouts near the target
          in the semantic tree are told apart from far ones even when no rollout hits.
  similarity  dense: the cosine similarity of the rollout's and the target's item vectors
          (rl.similarity_vectors: the text vectors, or what the quantizer read; 1 for
          the target). Unlike
          prefix it tells apart rollouts that share no SID level with the target, so a
          group has no spread only when its rollouts are equally far from the target.

GRPO normalises the weighted sum within each group (TRL), so only differences inside a
group matter.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from ..vectors import unit_rows

REWARDS = ("hit", "rank", "prefix", "similarity")


def hit_reward(items, targets) -> np.ndarray:
    items, targets = np.asarray(items), np.asarray(targets)
    return (items == targets).astype(np.float64)


def rank_reward(items, targets, groups, ranks) -> np.ndarray:
    """items, targets, groups, ranks: int [n] (one entry per rollout). A group's size G
    is the number of its rollouts; ranks are 0..G-1 within it."""
    items, targets = np.asarray(items), np.asarray(targets)
    groups, ranks = np.asarray(groups), np.asarray(ranks)
    hits = items == targets
    out = np.zeros(len(items), dtype=np.float64)
    for g in np.unique(groups):
        members = groups == g
        if not hits[members].any():
            continue
        size = int(members.sum())
        norm = (1.0 / np.log2(np.arange(size) + 2.0)).sum()
        wrong = members & ~hits
        out[wrong] = -(1.0 / np.log2(ranks[wrong] + 2.0)) / norm
    return out


def prefix_reward(items, targets, codes) -> np.ndarray:
    """Shared leading SID levels / L; codes int [n_items, L]."""
    codes = np.asarray(codes)
    a, b = codes[np.asarray(items)], codes[np.asarray(targets)]
    shared = np.cumprod(a == b, axis=1).sum(1)
    return shared / codes.shape[1]


def similarity_reward(items, targets, unit_vectors) -> np.ndarray:
    """Cosine similarity; unit_vectors float [n_items, dim], rows of norm 1 (or 0)."""
    a, b = unit_vectors[np.asarray(items)], unit_vectors[np.asarray(targets)]
    return np.einsum("nd,nd->n", a, b).astype(np.float64)


def reward_values(name: str, *, items, targets, groups, ranks, codes, unit_vectors=None) -> np.ndarray:
    """The reward `name` (one of REWARDS) of every rollout."""
    if name == "hit":
        return hit_reward(items, targets)
    if name == "rank":
        return rank_reward(items, targets, groups, ranks)
    if name == "prefix":
        return prefix_reward(items, targets, codes)
    if name == "similarity":
        if unit_vectors is None:
            raise ValueError("the similarity reward needs the items' vectors")
        return similarity_reward(items, targets, unit_vectors)
    raise ValueError(f"unknown reward {name!r}; expected one of {list(REWARDS)}")


def trl_reward_functions(weights: Mapping[str, float], codes, item_vectors=None) -> tuple[list[Callable], list[float]]:
    """(reward functions, their weights) for TRL's GRPOTrainer: one function per reward
    with a non-zero weight, named as the reward (TRL logs `rewards/<name>/mean`). Each
    reads the `target` column and the rollout's fields; none reads the prompt."""
    unknown = sorted(set(weights) - set(REWARDS))
    if unknown:
        raise ValueError(f"unknown reward(s) {unknown}; expected some of {list(REWARDS)}")
    codes = np.asarray(codes)
    unit_vectors = None
    if weights.get("similarity"):
        if item_vectors is None:
            raise ValueError("the similarity reward needs the items' vectors (item_vectors)")
        if len(item_vectors) != len(codes):
            raise ValueError(f"item_vectors has {len(item_vectors)} rows for {len(codes)} items")
        unit_vectors = unit_rows(item_vectors)
    funcs, used = [], []
    for name in REWARDS:
        weight = float(weights.get(name, 0.0))
        if weight == 0.0:
            continue

        def reward(prompts=None, completions=None, completion_ids=None, *, target, rollout_item,
                   rollout_group, rollout_rank, _name=name, **_):
            return reward_values(_name, items=rollout_item, targets=target, groups=rollout_group,
                                 ranks=rollout_rank, codes=codes, unit_vectors=unit_vectors).tolist()

        reward.__name__ = name
        funcs.append(reward)
        used.append(weight)
    if not funcs:
        raise ValueError("every reward weight is 0: at least one reward must count")
    return funcs, used
