"""Row-wise helpers for item-vector matrices [n_items, d] (text embeddings, SASRec item
embeddings), shared by the quantiser's input and the RL similarity reward."""
from __future__ import annotations

import numpy as np


def unit_rows(vectors, dtype=np.float64) -> np.ndarray:
    """Rows scaled to unit L2 norm, as `dtype` (all-zero rows stay zero, not NaN)."""
    vectors = np.asarray(vectors, dtype=dtype)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0).astype(dtype)
