"""What the quantiser reads (`quantizer.input`): the items' text vectors (embeddings.npy),
their collaborative vectors (the item embeddings of the SASRec the DAG trains on the same
training rows), or both side by side.

Semantic IDs from text alone put items with similar descriptions under one prefix; on
interaction-rich data (MovieLens: titles only, long histories) what predicts the next item
is who watched it, which only the collaborative vectors know (LETTER, TIGER's follow-ups).
"both" L2-normalises each part and weights the collaborative one, so neither part wins by
its scale or its width alone.
"""
from __future__ import annotations

import numpy as np

from ..vectors import unit_rows

INPUTS = ("text", "collaborative", "both")


def collaborative_vectors(item_embeddings: np.ndarray, n_items: int) -> np.ndarray:
    """Item i's row of a SASRec item-embedding table (rows 0..n_items-1 are the items; a
    padding row after them is dropped). ValueError when the table has fewer rows."""
    table = np.asarray(item_embeddings, dtype=np.float32)
    if table.ndim != 2 or table.shape[0] < n_items:
        raise ValueError(f"expected an item-embedding table with >= {n_items} rows, got shape {table.shape}")
    return table[:n_items].copy()


def quantizer_input(kind: str, text: np.ndarray, collaborative: np.ndarray | None = None,
                    collaborative_weight: float = 1.0) -> np.ndarray:
    """The matrix [n_items, d] the quantiser (and the SID stage's re-spreading) reads.

    text: the text vectors as embedded (returned unchanged for "text", so the default
    pipeline's SIDs do not move); "collaborative": the collaborative vectors,
    unit-normalised; "both": [unit(text), w * unit(collaborative)], w =
    `collaborative_weight` (the two parts' share of the squared distance is 1 : w^2)."""
    if kind not in INPUTS:
        raise ValueError(f"quantizer input must be one of {INPUTS}, got {kind!r}")
    if kind == "text":
        return np.asarray(text, dtype=np.float32)
    if collaborative is None:
        raise ValueError(f"quantizer input {kind!r} needs the collaborative vectors")
    if len(collaborative) != len(text):
        raise ValueError(f"{len(text)} text vectors but {len(collaborative)} collaborative ones")
    if collaborative_weight < 0:
        raise ValueError(f"collaborative_weight must be >= 0, got {collaborative_weight}")
    collab = unit_rows(collaborative, dtype=np.float32)
    if kind == "collaborative":
        return collab
    weight = np.float32(collaborative_weight)
    return np.concatenate([unit_rows(text, dtype=np.float32), weight * collab], axis=1)
