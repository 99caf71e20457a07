"""A batch of recommend requests -> one constrained decode -> each request's top-k.

Requests of one batch differ in k and in how many history items they exclude, so the
batch is decoded once at the largest depth any of them needs (k + its distinct history
items, capped by the catalogue) and each request reads its own prefix of its row. The
decoder's exact mode makes that prefix the request's true top items (ties aside), so
a request's answer does not depend on what it was batched with.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..decode.graphs import BeamGraphs
from ..recommend import Recommender


@dataclass(frozen=True)
class Query:
    """A validated request: `history` item ids, oldest first, already cut to the limit."""
    history: tuple[int, ...]
    k: int
    exclude_history: bool = True


@dataclass(frozen=True)
class Ranked:
    items: list[int]      # best first
    scores: list[float]   # sequence log-probabilities of their SIDs


DECODES = ("exact", "beam")
# Decoder counts summed over every batch the engine ran (see `constrained_topk`'s stats):
# with `seconds`, they say where a batch's time goes (widening, rescoring, tokens fed).
_SUMMED_STATS = ("widened_rows", "widen_rounds", "full_fanout_rows", "rescored_candidates",
                 "prefill_tokens", "decode_tokens")


class Engine:
    """`recommender.top_k` over batches of queries. `beam_width` as in the predict stage.
    decode "exact" (the default, what predict reports): the search widens where the beam
    cannot prove its top items, so each answer is the model's true top-k. "beam": the
    plain constrained beam search, no certificate and no float32 rescoring: fewer forward
    passes per batch (with a bf16 model on a GPU, exact adds a float32 rescoring pass and
    widening passes to every batch), at the price of answers that may miss an item the
    beam pruned. cuda_graphs (beam on a CUDA model): replay each padded batch shape from
    a CUDA graph (sidrec.decode.graphs), 2.7-9x faster at 64-1 rows on an H200, where the
    eager decode is bound by the host's kernel launches. `max_history` (with graphs):
    capture every shape that histories of 1..max_history items can take now, at start,
    rather than in the first requests' path."""

    def __init__(self, recommender: Recommender, *, beam_width: int = 50, decode: str = "exact",
                 cuda_graphs: bool = True, max_history: int | None = None):
        if decode not in DECODES:
            raise ValueError(f"decode must be one of {DECODES}, got {decode!r}")
        self.recommender, self.beam_width, self.decode = recommender, int(beam_width), decode
        self.n_items = recommender.builder.n_items
        self.totals = {"batches": 0, "rows": 0, "seconds": 0.0, **{key: 0 for key in _SUMMED_STATS}}
        on_cuda = next(recommender.model.parameters()).device.type == "cuda"
        self.graphs = None
        if decode == "beam" and cuda_graphs and on_cuda:
            self.graphs = BeamGraphs(recommender.model, recommender.trie, beam_width=self.beam_width,
                                     pad_token_id=recommender.tokenizer.pad_token_id)
            if max_history:
                self.warm_graphs(max_history)

    def warm_graphs(self, max_history: int) -> int:
        """Capture the graphs of every batch shape that histories of up to `max_history`
        items and k up to the beam width can take -> graphs captured (0 without graphs)."""
        if self.graphs is None:
            return 0
        lengths = [len(p) for p in self.recommender.prompts([[0] * n for n in range(1, max_history + 1)])]
        return self.graphs.warm(lengths, k=self.beam_width)

    def stats(self) -> dict:
        """Totals over every batch so far: batches, rows, decoder seconds (wall clock of
        the decode, which ends by copying its results to the host), and the decoder's
        counts. A copy: the worker thread keeps adding to the engine's own."""
        graphs = self.graphs.stats() if self.graphs else None
        return {"decode": self.decode, "beam_width": self.beam_width, **self.totals, "cuda_graphs": graphs}

    def depth(self, query: Query) -> int:
        """Items to decode so that k survive the exclusion."""
        extra = len(set(query.history)) if query.exclude_history else 0
        return min(self.n_items, query.k + extra)

    def run(self, queries: Sequence[Query]) -> list[Ranked]:
        depth = max(self.depth(q) for q in queries)
        started = time.perf_counter()
        histories = [q.history for q in queries]
        if self.graphs is not None:
            result = self.graphs.topk(self.recommender.prompts(histories), depth)
        else:
            result = self.recommender.top_k(histories, depth, beam_width=self.beam_width,
                                            batch_size=max(1, len(queries)), exact=self.decode == "exact")
        self._count(len(queries), time.perf_counter() - started, result.stats)
        if result.invalid:
            raise RuntimeError(f"{result.invalid} decoded outputs are not catalogue items")
        return [self._pick(q, items, scores) for q, items, scores in zip(queries, result.items, result.scores)]

    def _count(self, rows: int, seconds: float, stats: dict) -> None:
        totals = self.totals
        totals["batches"] += 1
        totals["rows"] += rows
        totals["seconds"] += seconds
        for key in _SUMMED_STATS:
            totals[key] += int(stats.get(key, 0))

    @staticmethod
    def _pick(query: Query, items: np.ndarray, scores: np.ndarray) -> Ranked:
        seen = set(query.history) if query.exclude_history else set()
        keep = [(int(i), float(s)) for i, s in zip(items.tolist(), scores.tolist()) if i >= 0 and i not in seen]
        keep = keep[:query.k]
        return Ranked([i for i, _ in keep], [s for _, s in keep])
