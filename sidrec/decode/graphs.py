"""The plain constrained beam search (`constrained_topk(exact=False)`) replayed from CUDA graphs.

Why: at serving batch sizes a decode is bound by the host, not the GPU. On the lent
H200 an eager SmolLM2-135M beam decode took 106 ms for 1 row and 122 ms for 64: Python
and kernel launches, whatever the batch (bench/RESULTS.md, "Serving"). A CUDA graph
replays a whole decode (prefill, the L-1 beam steps, every top-k and gather) as one launch.

A graph's shapes are fixed, so a batch is padded to a few shapes: rows up to the next
power of two (<= `max_rows`; the extra rows repeat the first prompt and are dropped),
prompts left-padded to a multiple of `length_step` tokens, and k rounded up to a multiple
of `k_step` (default: the beam width, so one shape serves every k up to it; the beam
search keeps max(k, beam_width) beams). One graph per (rows, prompt length, k), captured
on first use or ahead of it by `warm` (a capture costs a few eager decodes: left to the
first requests, it stalled them; the first H200 load test's p99 was 1.8 s), and kept (at
most `max_graphs`; shapes beyond that run without a graph); all share one memory pool,
which is safe because they run one at a time and each graph's outputs are copied to the
host right after its replay.

Padding is masked, so it changes a result only by float rounding (a row's prompt sits at
another offset); the same padded path runs without graphs (`capture=False`, the CPU),
which is how the tests check it against `constrained_topk`. If a capture fails (a model
whose forward synchronises with the host), the decoder says why in `stats()` and runs
every later batch without graphs.
"""
from __future__ import annotations

import numpy as np
import torch

from .beam import DecodeResult, _collate, _decode_batch, _model_device_dtype, invalid_entries
from .trie import SIDTrie


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


class BeamGraphs:
    """`topk(prompts, k)` -> DecodeResult, as `constrained_topk(model, prompts, trie, k=k,
    beam_width=beam_width, exact=False, pad_token_id=pad_token_id)` up to float rounding.
    `capture`: None = on CUDA only; False runs the padded shapes eagerly."""

    def __init__(self, model, trie: SIDTrie, *, beam_width: int = 50, pad_token_id: int | None = None,
                 max_rows: int = 64, length_step: int = 64, k_step: int | None = None, max_graphs: int = 64,
                 capture: bool | None = None):
        k_step = beam_width if k_step is None else k_step
        if beam_width < 1 or max_rows < 1 or length_step < 1 or k_step < 1:
            raise ValueError("beam_width, max_rows, length_step and k_step must be >= 1")
        self.model = model
        self.device, _ = _model_device_dtype(model)
        if capture and self.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA model; this one is on {self.device}")
        self.capture = self.device.type == "cuda" if capture is None else bool(capture)
        self.trie = trie.to(self.device)
        self.beam_width, self.pad = int(beam_width), 0 if pad_token_id is None else int(pad_token_id)
        self.max_rows, self.length_step, self.k_step, self.max_graphs = max_rows, length_step, k_step, max_graphs
        self._graphs: dict[tuple[int, int, int], tuple] = {}
        self._pool = None
        self.counts = {"batches": 0, "replays": 0, "eager": 0, "captures": 0, "padded_rows": 0}
        self.error: str | None = None

    def stats(self) -> dict:
        return {"capture": self.capture, "graphs": len(self._graphs), **self.counts, "error": self.error}

    def rows_bucket(self, rows: int) -> int:
        bucket = 1
        while bucket < rows:
            bucket *= 2
        return min(bucket, self.max_rows)

    def k_bucket(self, k: int) -> int:
        return min(self.trie.n_items, _round_up(min(k, self.trie.n_items), self.k_step))

    def shapes(self, prompt_lengths, k: int) -> list[tuple[int, int, int]]:
        """The padded (rows, prompt length, k) shapes that batches of prompts of these
        lengths (tokens) asking for k items can take: every rows bucket up to max_rows."""
        lengths = sorted({_round_up(int(n), self.length_step) for n in prompt_lengths})
        buckets = sorted({self.rows_bucket(r) for r in range(1, self.max_rows + 1)})
        return [(R, P, self.k_bucket(k)) for P in lengths for R in buckets]

    def warm(self, prompt_lengths, k: int) -> int:
        """Capture now every shape of `shapes(prompt_lengths, k)` not yet captured, so that
        no request waits for a capture -> graphs captured. Nothing to do without capture."""
        captured = 0
        for key in self.shapes(prompt_lengths, k):
            if not self.capture or len(self._graphs) >= self.max_graphs:
                break
            if key in self._graphs:
                continue
            R, P, _ = key
            ids, attn = _collate([[self.pad] * P] * R, self.pad, self.device, length=P)
            captured += self._capture(key, ids, attn) is not None
        return captured

    def topk(self, prompts: list[list[int]], k: int) -> DecodeResult:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        prompts = [list(map(int, p)) for p in prompts]
        if any(len(p) == 0 for p in prompts):
            raise ValueError(f"empty prompt at row {next(i for i, p in enumerate(prompts) if not p)}")
        n, n_items = len(prompts), self.trie.n_items
        k_eff, k_pad = min(k, n_items), self.k_bucket(k)
        items = np.full((n, k), -1, dtype=np.int64)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        for start in range(0, n, self.max_rows):
            chunk = prompts[start:start + self.max_rows]
            R = self.rows_bucket(len(chunk))
            P = _round_up(max(len(p) for p in chunk), self.length_step)
            rows = chunk + [chunk[0]] * (R - len(chunk))
            ids, attn = _collate(rows, self.pad, self.device, length=P)
            out_items, out_scores = self._run((R, P, k_pad), ids, attn)
            items[start:start + len(chunk), :k_eff] = out_items[:len(chunk), :k_eff].cpu().numpy()
            scores[start:start + len(chunk), :k_eff] = out_scores[:len(chunk), :k_eff].cpu().numpy()
            self.counts["batches"] += 1
            self.counts["padded_rows"] += R - len(chunk)
        return DecodeResult(items=items, scores=scores, invalid=invalid_entries(items[:, :k_eff], n_items),
                            stats={"rows": n, "k": k, "beam_width": self.beam_width, "graphs": self.stats()})

    def _decode(self, ids: torch.Tensor, attn: torch.Tensor, k_pad: int) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(k_pad, self.beam_width)
        widths = [1] + [min(width, self.trie.n_nodes[d]) for d in range(1, self.trie.levels)]
        res = _decode_batch(self.model, ids, attn, self.trie, k_eff=k_pad, widths=widths, n_out=k_pad,
                            prefill_4d=True)
        return res.items, res.scores

    def _run(self, key: tuple[int, int, int], ids: torch.Tensor, attn: torch.Tensor):
        graph = self._graphs.get(key)
        if graph is None and self.capture and len(self._graphs) < self.max_graphs:
            graph = self._capture(key, ids, attn)
        if graph is None:
            self.counts["eager"] += 1
            return self._decode(ids, attn, key[2])
        cuda_graph, static_ids, static_attn, outputs = graph
        static_ids.copy_(ids)
        static_attn.copy_(attn)
        cuda_graph.replay()
        self.counts["replays"] += 1
        return outputs

    def _capture(self, key: tuple[int, int, int], ids: torch.Tensor, attn: torch.Tensor):
        static_ids, static_attn = ids.clone(), attn.clone()
        try:
            # Warm-up on a side stream first (cuBLAS workspaces, lazy inits), as
            # torch.cuda.graph's documentation asks.
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._decode(static_ids, static_attn, key[2])
            torch.cuda.current_stream(self.device).wait_stream(side)
            cuda_graph = torch.cuda.CUDAGraph()
            # thread_local: another thread's CUDA call (a server's) does not break the capture
            with torch.cuda.graph(cuda_graph, pool=self._pool, capture_error_mode="thread_local"):
                outputs = self._decode(static_ids, static_attn, key[2])
        except RuntimeError as error:  # e.g. a host synchronisation inside the forward
            self.capture, self.error = False, f"capture of shape {key} failed, running without graphs: {error}"
            try:  # let the failed capture's work drain before the eager decode runs
                torch.cuda.synchronize(self.device)
            except RuntimeError:
                pass
            return None
        self._pool = cuda_graph.pool()
        self.counts["captures"] += 1
        self._graphs[key] = (cuda_graph, static_ids, static_attn, outputs)
        return self._graphs[key]


__all__ = ["BeamGraphs"]
