"""Stage `item_vectors`: embeddings.npy (+ the selected SASRec checkpoint) -> the matrix the
quantiser and the SID stage read when `quantizer.input` is not "text"."""
from __future__ import annotations

import numpy as np

from ..baselines.sasrec import load_sasrec
from ..errors import InputError
from ..io import atomic_path
from ..quantize.inputs import collaborative_vectors, quantizer_input
from .embeddings import load_embeddings


def build_item_vectors(kind: str, embeddings_path, sasrec_path, out_path, *,
                       collaborative_weight: float = 1.0) -> np.ndarray:
    """Write the quantiser's input for `kind` ("collaborative" or "both") to `out_path`
    (atomically) and return it. InputError naming the checkpoint when its item table does
    not cover the catalogue of embeddings.npy."""
    text = load_embeddings(embeddings_path)
    model, _, _ = load_sasrec(sasrec_path)
    table = model.item_emb.weight.detach().cpu().numpy()
    if model.n_items != len(text):
        raise InputError(sasrec_path, f"SASRec was trained on {model.n_items} items but "
                                      f"{embeddings_path} has {len(text)}: not the same catalogue")
    vectors = quantizer_input(kind, text, collaborative_vectors(table, len(text)),
                              collaborative_weight=collaborative_weight)
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, vectors)
    print(f"item_vectors: {kind} -> {vectors.shape} (text {text.shape[1]}, SASRec {table.shape[1]}, "
          f"collaborative weight {collaborative_weight})")
    return vectors
