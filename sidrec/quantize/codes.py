"""What every quantiser returns, and the checkpoint envelope they share.

Both quantisers (rqvae.py, rqkmeans.py) write one torch file holding only tensors and
plain Python values, so `torch.load(path, weights_only=True)` reads it without
unpickling arbitrary objects. The envelope's `method` field says which module rebuilds
it; `sidrec.quantize.load_quantizer` dispatches on it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..io import atomic_path

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

    @property
    def n_items(self) -> int:
        return int(self.codes.shape[0])

    @property
    def levels(self) -> int:
        return int(self.codes.shape[1])

    @property
    def codebook_size(self) -> int:
        return int(self.last_level_cost.shape[1])


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


def plain(obj):
    """Deep-convert numpy scalars/arrays and tuples to plain Python values, so a report or
    config can go into a `weights_only` checkpoint (which refuses numpy objects)."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, str):
        return str(obj)  # str subclasses such as torch.__version__ are not allowlisted
    return obj


def save_payload(path, payload: dict) -> None:
    """Write a checkpoint dict atomically. Tensors stay tensors; everything else is
    converted to plain Python values first (see `plain`)."""
    payload = {"format": CHECKPOINT_FORMAT,
               **{k: v if isinstance(v, torch.Tensor) or k == "state_dict" else plain(v)
                  for k, v in payload.items()}}
    if payload.get("method") not in METHODS:
        raise ValueError(f"payload method must be one of {METHODS}")
    with atomic_path(path, suffix=".pt.tmp") as tmp:
        torch.save(payload, tmp)


def load_payload(path) -> dict:
    """Read a checkpoint dict with weights_only=True; InputError naming `path` if it is
    missing, unreadable, or not a quantiser checkpoint of this format."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, not a torch file, disallowed pickle content
        raise InputError(path, f"not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise InputError(path, f"not a quantiser checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    if payload.get("method") not in METHODS:
        raise InputError(path, f"unknown quantiser method {payload.get('method')!r}", key="method")
    return payload
