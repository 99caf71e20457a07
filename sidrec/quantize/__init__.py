"""Embeddings -> codes. One quantiser per module:

  kmeans.py    deterministic torch k-means (initialises every RQ-VAE level)
  rqvae.py     RQ-VAE (LC-Rec / MiniOneRec): train_rqvae, encode, save_checkpoint
  rqkmeans.py  residual k-means with faiss: train_rqkmeans, save_checkpoint
  codes.py     the shared `Codes` result and checkpoint payload

`train_quantizer` trains either from the config's flat `quantizer` section and
`save_quantizer` writes it; both checkpoints are one torch file readable with
`weights_only=True`, and `load_quantizer` reads either back. Every quantiser object has
`.method`, `.config`, `.report` and `.encode(embeddings) -> Codes`.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Callable

from ..errors import InputError
from . import rqkmeans, rqvae
from .codes import METHODS, Codes, load_payload
from .kmeans import kmeans
from .rqkmeans import RQKMeans, RQKMeansConfig, train_rqkmeans
from .rqvae import RQVAE, RQVAEConfig, RQVAEQuantizer, encode, train_rqvae

__all__ = ["Codes", "kmeans", "RQVAE", "RQVAEConfig", "RQVAEQuantizer", "encode", "train_rqvae",
           "RQKMeans", "RQKMeansConfig", "train_rqkmeans", "train_quantizer", "save_quantizer",
           "load_quantizer"]

# config/schema.yaml `quantizer` keys -> RQKMeansConfig fields. The section's other keys
# (latent_dim, hidden_dims, beta, ...) shape the RQ-VAE network and mean nothing here.
RQKMEANS_KEYS = {"levels": "levels", "codebook_size": "codebook_size", "seed": "seed",
                 "kmeans_iters": "iters"}
# Every key of the schema's `quantizer` section but `method`; each is an RQVAEConfig field.
SCHEMA_KEYS = ("levels", "codebook_size", "latent_dim", "hidden_dims", "beta", "dropout", "epochs",
               "batch_size", "lr", "weight_decay", "kmeans_init", "kmeans_iters", "sinkhorn",
               "sinkhorn_epsilon", "seed")


def train_quantizer(embeddings, params: dict, *, device="cpu",
                    log: Callable[[str], None] | None = print) -> tuple[RQVAEQuantizer | RQKMeans, dict]:
    """Train the quantiser that `params` describes on `embeddings` float [n, d].

    params: the config's flat `quantizer` section: `method` ("rqvae", the default, or
    "rqkmeans") and any of SCHEMA_KEYS. For "rqvae" every key is the RQVAEConfig field
    of that name (its other fields, e.g. sinkhorn_iters, are accepted too); for
    "rqkmeans" levels, codebook_size, seed and kmeans_iters (-> iters) are used, the
    RQ-VAE-only keys are ignored, and max_points_per_centroid is accepted.
    device: "cpu" or "cuda" for the RQ-VAE; RQ-KMeans always runs on the CPU (faiss) and
    accepts any device.

    Returns (quantiser with `.encode(embeddings) -> Codes`, report); an RQ-VAE stays on
    `device`. Unknown method or keys raise InputError naming `quantizer.<key>`.
    """
    params = dict(params)
    method = params.pop("method", "rqvae")
    if method not in METHODS:
        raise InputError("config", f"unknown method {method!r}; expected one of {list(METHODS)}",
                         key="quantizer.method")
    if method == "rqvae":
        own = {f.name for f in fields(RQVAEConfig)}
    else:  # its renamed fields (iters) go by their schema names only
        own = ({f.name for f in fields(RQKMeansConfig)} - set(RQKMEANS_KEYS.values())) | set(RQKMEANS_KEYS)
    known = set(SCHEMA_KEYS) | own
    for key in params:
        if key not in known:
            raise InputError("config", f"not a {method} setting; expected some of {sorted(known)}",
                             key=f"quantizer.{key}")
    try:
        config = RQVAEConfig(**params) if method == "rqvae" else \
            RQKMeansConfig(**{RQKMEANS_KEYS.get(k, k): v for k, v in params.items() if k in own})
    except ValueError as e:
        raise InputError("config", str(e), key="quantizer") from None
    if method == "rqvae":
        model, report = train_rqvae(embeddings, config, device=device, log=log)
        return RQVAEQuantizer(model=model, config=model.config, report=report), report
    return train_rqkmeans(embeddings, config, log=log)


def save_quantizer(path, quantizer: RQVAEQuantizer | RQKMeans, report: dict | None = None) -> None:
    """Write a `train_quantizer` result as one checkpoint, atomically; `load_quantizer`
    reads it back. report: defaults to the quantiser's own."""
    report = quantizer.report if report is None else report
    if quantizer.method == "rqvae":
        rqvae.save_checkpoint(path, quantizer.model, quantizer.config, report)
    else:
        rqkmeans.save_checkpoint(path, quantizer, report)


def load_quantizer(path) -> RQVAEQuantizer | RQKMeans:
    """Read an RQ-VAE or RQ-KMeans checkpoint -> quantiser on CPU with `.encode()`.

    Raises InputError naming `path` when the file is missing, corrupt, or holds
    something other than a quantiser checkpoint of this format.
    """
    payload = load_payload(path)
    cls = RQVAEQuantizer if payload["method"] == "rqvae" else RQKMeans
    return cls.from_payload(path, payload)
