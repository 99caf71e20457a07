"""The item tokenizer stage: embeddings -> quantiser checkpoint -> unique SIDs.

Two steps, two artifacts (rqvae.ckpt, sid.json), so that the SID assignment can be
re-run or audited without retraining the quantiser.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from .errors import InputError
from .quantize import load_quantizer
from .quantize import rqkmeans, rqvae
from .sid import assign_unique_sids, write_sid_json, write_sid_meta

# Config keys (config/schema.yaml `quantizer`) that each method does not use.
_RQKMEANS_KEYS = {"levels": "levels", "codebook_size": "codebook_size", "seed": "seed",
                  "kmeans_iters": "iters"}


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


def fit_quantizer(embeddings_path, out_path, hp: dict, *, device: str | None = None, log=print) -> dict:
    """Train the configured quantiser on the embeddings and write its checkpoint."""
    hp = dict(hp)
    method = hp.pop("method", "rqvae")
    emb = load_embeddings(embeddings_path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    if method == "rqvae":
        config = rqvae.RQVAEConfig(**hp)
        model, report = rqvae.train_rqvae(emb, config, device=device, log=log)
        rqvae.save_checkpoint(out_path, model.cpu(), model.config, report)
    elif method == "rqkmeans":
        config = rqkmeans.RQKMeansConfig(**{new: hp[old] for old, new in _RQKMEANS_KEYS.items() if old in hp})
        quantizer, report = rqkmeans.train_rqkmeans(emb, config, log=log)
        rqkmeans.save_checkpoint(out_path, quantizer, report)
    else:
        raise InputError("config", f"unknown method {method!r}; expected rqvae or rqkmeans",
                         key="quantizer.method")
    log(f"{method}: {emb.shape[0]} items, {time.perf_counter() - start:.1f}s, "
        f"collision rate {report.get('collision_rate')}, usage {report.get('codebook_usage', report.get('usage'))}")
    return report


def build_sids(quantizer_path, embeddings_path, sid_path, meta_path, *, codebook_size: int, log=print) -> dict:
    """Encode every item, make the SIDs unique, write sid.json and its metadata."""
    quantizer = load_quantizer(quantizer_path)
    codes = quantizer.encode(load_embeddings(embeddings_path))
    sids, meta = assign_unique_sids(codes, codebook_size)
    meta["quantizer"] = quantizer.method
    write_sid_json(sid_path, sids)
    write_sid_meta(meta_path, meta)
    log(f"{len(sids)} items, {sids.shape[1]} levels, collisions before {meta['collisions_before']}, "
        f"after {meta['collisions_after']}, extra level {meta['extra_level']}")
    return meta
