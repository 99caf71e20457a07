"""Embeddings -> codes. One quantiser per module:

  kmeans.py    deterministic torch k-means (initialises every RQ-VAE level)
  rqvae.py     RQ-VAE (LC-Rec / MiniOneRec): train_rqvae, encode, save_checkpoint
  rqkmeans.py  residual k-means with faiss: train_rqkmeans, save_checkpoint
  codes.py     the shared `Codes` result and checkpoint envelope

Both checkpoints are one torch file readable with `weights_only=True`; `load_quantizer`
reads either and returns an object with `.encode(embeddings) -> Codes`.
"""
from __future__ import annotations

from .codes import Codes, load_payload
from .kmeans import kmeans
from .rqkmeans import RQKMeans, RQKMeansConfig, train_rqkmeans
from .rqvae import RQVAE, RQVAEConfig, RQVAEQuantizer, encode, train_rqvae

__all__ = ["Codes", "kmeans", "RQVAE", "RQVAEConfig", "RQVAEQuantizer", "encode", "train_rqvae",
           "RQKMeans", "RQKMeansConfig", "train_rqkmeans", "load_quantizer"]


def load_quantizer(path) -> RQVAEQuantizer | RQKMeans:
    """Read an RQ-VAE or RQ-KMeans checkpoint -> quantiser on CPU with `.encode()`.

    Raises InputError naming `path` when the file is missing, corrupt, or holds
    something other than a quantiser checkpoint of this format.
    """
    payload = load_payload(path)
    cls = RQVAEQuantizer if payload["method"] == "rqvae" else RQKMeans
    return cls.from_payload(path, payload)
