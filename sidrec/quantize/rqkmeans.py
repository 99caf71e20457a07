"""Residual k-means (RQ-KMeans): no network, L rounds of k-means on what is left.

x [n, D] -> r_0 = x; for each level l: C_l = kmeans(r_l, K); c_l = nearest(r_l, C_l);
r_{l+1} = r_l - C_l[c_l]. Clustering is faiss's (seeded, CPU); assignment is the torch
nearest-centroid of kmeans.py, so ties always go to the lowest code and encode() after
loading reproduces training's codes exactly. Same `Codes` output and checkpoint
envelope as the RQ-VAE (method "rqkmeans").
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import Callable

import numpy as np
import torch

from ..errors import InputError
from .codes import Codes, as_embeddings, code_usage, collision_stats, save_payload
from .kmeans import kmeans, nearest, squared_distances

METHOD = "rqkmeans"


@dataclass(kw_only=True)
class RQKMeansConfig:
    """Options; saved in every checkpoint."""

    levels: int = 3
    codebook_size: int = 256
    # Lloyd iterations per level (faiss's niter). Not the schema's `kmeans_iters` default
    # (50, chosen for the RQ-VAE's k-means initialisation): the pipeline always passes
    # that key (train_quantizer maps kmeans_iters -> iters), so 20 only serves direct calls.
    iters: int = 20
    seed: int = 42              # the schema's `quantizer.seed`; level l uses seed + l
    max_points_per_centroid: int = 256  # faiss subsamples (seeded) above K * this many rows

    def __post_init__(self):
        for name in ("levels", "codebook_size", "iters", "max_points_per_centroid"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def _fit_level(residual: np.ndarray, k: int, *, iters: int, seed: int, max_ppc: int) -> np.ndarray:
    """k centroids float32 [k, d] of `residual` [n, d]."""
    n, d = residual.shape
    if n < k:
        # faiss refuses n < k; the torch k-means pads with duplicate centres instead.
        centroids, _ = kmeans(torch.from_numpy(residual), k, iters=iters, seed=seed)
        return centroids.numpy().astype(np.float32)
    import faiss  # imported here so the RQ-VAE path never needs it

    # min_points_per_centroid=1 only silences faiss's "please provide more points" warning.
    km = faiss.Kmeans(d, k, niter=iters, seed=seed, verbose=False, spherical=False,
                      min_points_per_centroid=1, max_points_per_centroid=max_ppc)
    km.train(np.ascontiguousarray(residual, dtype=np.float32))
    return np.asarray(km.centroids, dtype=np.float32).reshape(k, d)


def _encode(codebooks: torch.Tensor, x: np.ndarray) -> Codes:
    """codebooks float32 [L, K, d], x float32 [n, d] -> Codes."""
    residual = torch.from_numpy(x)
    codes = []
    for lvl in range(codebooks.shape[0]):
        idx = nearest(residual, codebooks[lvl])
        if lvl == codebooks.shape[0] - 1:
            cost = squared_distances(residual, codebooks[lvl])
        residual = residual - codebooks[lvl][idx]
        codes.append(idx)
    return Codes(codes=torch.stack(codes, 1).numpy().astype(np.int64),
                 last_level_cost=cost.numpy().astype(np.float32))


class RQKMeans:
    """Trained residual k-means: `codebooks` float32 tensor [L, K, d]."""

    method = METHOD

    def __init__(self, *, codebooks: torch.Tensor, config: RQKMeansConfig, report: dict | None = None):
        if codebooks.ndim != 3 or codebooks.shape[:2] != (config.levels, config.codebook_size):
            raise ValueError(f"codebooks shape {tuple(codebooks.shape)} does not match "
                             f"levels={config.levels}, codebook_size={config.codebook_size}")
        self.codebooks = codebooks.detach().float().cpu().contiguous()
        self.config = config
        self.report = report or {}

    @property
    def levels(self) -> int:
        return self.config.levels

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def input_dim(self) -> int:
        return int(self.codebooks.shape[2])

    def encode(self, embeddings) -> Codes:
        """embeddings float [n, d] -> Codes(codes int64 [n, L], last_level_cost float32 [n, K])."""
        return _encode(self.codebooks, as_embeddings(embeddings, input_dim=self.input_dim))

    @classmethod
    def from_payload(cls, path, payload: dict) -> "RQKMeans":
        """Rebuild from a loaded checkpoint dict; InputError naming `path` if inconsistent."""
        try:
            known = {f.name for f in fields(RQKMeansConfig)}
            config = RQKMeansConfig(**{k: v for k, v in payload["config"].items() if k in known})
            books = payload["codebooks"]
            if not isinstance(books, torch.Tensor):
                raise TypeError("codebooks is not a tensor")
            report = payload.get("report", {})
            return cls(codebooks=books, config=config, report=report if isinstance(report, dict) else {})
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InputError(path, f"inconsistent RQ-KMeans checkpoint ({type(e).__name__}: {e})") from None


def train_rqkmeans(embeddings: np.ndarray, config: RQKMeansConfig,
                   log: Callable[[str], None] | None = print) -> tuple[RQKMeans, dict]:
    """Fit residual k-means on `embeddings` float [n, d] -> (quantiser, report).

    report: method, n_items, input_dim, train_seconds, level_mse (mean squared residual
    per coordinate after each level), final_recon_loss (= the last of those),
    codebook_usage, collision_rate, colliding_groups.
    """
    log = log or (lambda _msg: None)
    x = as_embeddings(embeddings)
    n, d = x.shape
    t0 = time.perf_counter()
    residual = x.copy()
    books, level_mse = [], []
    for lvl in range(config.levels):
        centroids = _fit_level(residual, config.codebook_size, iters=config.iters,
                               seed=config.seed + lvl, max_ppc=config.max_points_per_centroid)
        idx = nearest(torch.from_numpy(residual), torch.from_numpy(centroids)).numpy()
        residual = residual - centroids[idx]
        books.append(centroids)
        level_mse.append(float(np.mean(residual.astype(np.float64) ** 2)))
    seconds = time.perf_counter() - t0
    quantizer = RQKMeans(codebooks=torch.from_numpy(np.stack(books)), config=config)
    codes = quantizer.encode(x)
    colliding, groups = collision_stats(codes.codes)
    report = {
        "method": METHOD,
        "n_items": int(n),
        "input_dim": int(d),
        "device": "cpu",  # faiss clustering and the torch assignment both run on the CPU
        "train_seconds": round(seconds, 4),
        "level_mse": level_mse,
        "final_recon_loss": level_mse[-1],
        "codebook_usage": code_usage(codes.codes, [config.codebook_size] * config.levels),
        "collision_rate": colliding / n,
        "colliding_groups": groups,
    }
    quantizer.report = report
    log(f"rqkmeans: n={n} dim={d} levels={config.levels} K={config.codebook_size} in {seconds:.2f}s, "
        f"residual mse {level_mse[-1]:.5f}, collisions {report['collision_rate']:.4f}")
    return quantizer, report


def save_checkpoint(path, quantizer: RQKMeans, report: dict | None = None) -> None:
    """One file, written atomically, readable with `torch.load(path, weights_only=True)`:
    {format, method: "rqkmeans", config (dict), codebooks float32 [L, K, d], report}."""
    save_payload(path, {
        "method": METHOD,
        "config": asdict(quantizer.config),
        "codebooks": quantizer.codebooks.clone(),
        "report": report if report is not None else quantizer.report,
    })
