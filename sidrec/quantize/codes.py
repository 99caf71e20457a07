"""What every quantiser returns, and the checkpoint payload they share.

Both quantisers (rqvae.py, rqkmeans.py) write one file through `sidrec.io`'s checkpoint
envelope (tensors and plain values only, read back with `torch.load(weights_only=True)`).
The payload's `method` field says which module rebuilds it;
`sidrec.quantize.load_quantizer` dispatches on it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..io import load_checkpoint, save_checkpoint

CHECKPOINT_FORMAT = "sidrec.quantizer/1"
METHODS = ("rqvae", "rqkmeans")


@dataclass(frozen=True, kw_only=True)
class Codes:
    """Quantiser output for n items with L levels of K codes each.

    codes: int64 [n, L], each in 0..K-1.
    last_level_cost: float32 [n, K], squared distance of each item's last-level residual
        to every last-level codebook vector; `sid.assign_unique_sids` uses it to move
        colliding items to the nearest free last-level codes.
    """

    codes: np.ndarray
    last_level_cost: np.ndarray

    def __post_init__(self):
        if self.codes.ndim != 2 or self.last_level_cost.ndim != 2:
            raise ValueError("codes must be [n, L] and last_level_cost [n, K]")
        if self.codes.shape[0] != self.last_level_cost.shape[0]:
            raise ValueError(f"codes has {self.codes.shape[0]} rows, "
                             f"last_level_cost {self.last_level_cost.shape[0]}")


def collision_stats(codes: np.ndarray) -> tuple[int, int]:
    """codes int [n, L] -> (items whose full code tuple is shared, number of such groups)."""
    if codes.shape[0] == 0:
        return 0, 0
    _, counts = np.unique(codes, axis=0, return_counts=True)
    shared = counts[counts > 1]
    return int(shared.sum()), int(shared.size)


def code_usage(codes: np.ndarray, codebook_sizes) -> list[float]:
    """Fraction of each level's codebook used at least once: int [n, L] -> L floats."""
    return [float(np.unique(codes[:, lvl]).size / size) if codes.shape[0] else 0.0
            for lvl, size in enumerate(codebook_sizes)]


def as_embeddings(embeddings, *, input_dim: int | None = None, where: str = "embeddings") -> np.ndarray:
    """Validate an embedding matrix -> contiguous float32 [n, d]; InputError otherwise."""
    x = np.asarray(embeddings)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(where, f"expected a non-empty [n_items, dim] matrix, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise InputError(where, f"expected numbers, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if input_dim is not None and x.shape[1] != input_dim:
        raise InputError(where, f"dim {x.shape[1]} does not match the quantiser's input_dim {input_dim}")
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x).all(1))[0])
        raise InputError(where, f"row {bad} has NaN or inf")
    return x


def save_payload(path, payload: dict) -> None:
    """Write a quantiser checkpoint dict atomically (format "sidrec.quantizer/1")."""
    if payload.get("method") not in METHODS:
        raise ValueError(f"payload method must be one of {METHODS}")
    save_checkpoint(path, CHECKPOINT_FORMAT, payload)


def load_payload(path) -> dict:
    """Read a quantiser checkpoint dict; InputError naming `path` if it is missing,
    unreadable, or not a quantiser checkpoint of this format."""
    payload = load_checkpoint(path, CHECKPOINT_FORMAT, "quantiser")
    if payload.get("method") not in METHODS:
        raise InputError(path, f"unknown quantiser method {payload.get('method')!r}", key="method")
    return payload
