"""Reading embeddings.npy, shared by the stages that take it (quantize, sid)."""
from __future__ import annotations

import numpy as np

from ..errors import InputError


def load_embeddings(path) -> np.ndarray:
    try:
        emb = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(path, f"not a readable .npy array: {e}") from None
    if emb.ndim != 2 or emb.shape[0] == 0 or not np.issubdtype(emb.dtype, np.floating):
        raise InputError(path, f"expected a float matrix [n_items, d], got {emb.dtype} {emb.shape}")
    if not np.isfinite(emb).all():
        raise InputError(path, "embeddings contain NaN or inf")
    return emb.astype(np.float32, copy=False)
