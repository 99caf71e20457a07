"""Deterministic k-means in torch, on whatever device the data lives on.

Used to initialise every RQ-VAE codebook level (as LC-Rec / MiniOneRec do with
sklearn's KMeans, but without leaving the device). Deterministic by construction:

* every random number comes from a CPU `torch.Generator` seeded with `seed`, drawn in
  one go up front, so the same seed picks the same initial points on CPU and CUDA and
  no host<->device sync is needed during k-means++;
* centroid sums are one-hot matrix products rather than `index_add_`, whose CUDA
  kernel uses float atomics and so sums in a run-dependent order.

Degenerate input never produces NaN: with fewer distinct points than `k` (n < k, or
duplicates), k-means++ keeps re-picking existing points (zero distance mass), and an
empty cluster keeps its previous centroid instead of dividing by zero.
"""
from __future__ import annotations

import torch

# Rows per chunk for the distance / one-hot products: bounds the [chunk, k] temporaries.
_CHUNK = 65536


def squared_distances(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances, `x` [n, d] and `centroids` [k, d] -> [n, k].

    Expanded as |x|^2 - 2 x.c + |c|^2 (one matrix product); clamped at 0 because the
    expansion can go slightly negative in float32 for near-identical vectors.
    """
    d = (x * x).sum(1, keepdim=True) - 2.0 * (x @ centroids.T) + (centroids * centroids).sum(1)
    return d.clamp_min_(0.0)


def nearest(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid for each row: [n, d], [k, d] -> int64 [n].

    Ties go to the lowest index (torch.argmin), so duplicate centroids are harmless.
    """
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for s in range(0, x.shape[0], _CHUNK):
        out[s:s + _CHUNK] = squared_distances(x[s:s + _CHUNK], centroids).argmin(1)
    return out


def kmeans_plus_plus(x: torch.Tensor, k: int, *, seed: int = 0) -> torch.Tensor:
    """k-means++ seeding: [n, d] -> [k, d] initial centroids (rows of `x`).

    Each new centre is drawn with probability proportional to its squared distance
    to the nearest centre so far. When all remaining mass is zero (n < k or only
    duplicates left) the draw lands on an existing point: duplicate centres, no NaN.
    """
    n = x.shape[0]
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    first = int(torch.randint(n, (1,), generator=g))
    u = torch.rand(k, generator=g, dtype=torch.float64).to(x.device)
    centroids = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    centroids[0] = x[first]
    d2 = squared_distances(x, centroids[:1]).squeeze(1).double()
    for i in range(1, k):
        cum = d2.cumsum(0)
        # searchsorted on the cumulative mass = inverse-CDF sampling, all on device.
        idx = torch.searchsorted(cum, (u[i] * cum[-1]).reshape(1), right=True).clamp_(max=n - 1)
        centroids[i] = x[idx[0]]
        d2 = torch.minimum(d2, squared_distances(x, centroids[i:i + 1]).squeeze(1).double())
    return centroids


def kmeans(x: torch.Tensor, k: int, *, iters: int = 100, tol: float = 1e-6, seed: int = 0,
           init: str = "kmeans++") -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means: `x` [n, d] float -> (centroids [k, d], assignment int64 [n]).

    Args:
        k: number of clusters; n < k is allowed (some centroids are then duplicates).
        iters: maximum Lloyd iterations.
        tol: stop early once the largest squared centroid move is <= tol * mean |x|^2
            (scale-free, so the same tol suits raw and normalised embeddings).
        seed: seeds the initialisation; same seed + same device -> same result.
        init: "kmeans++" or "random" (k distinct rows drawn uniformly, with repeats
            only when n < k).
    """
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"kmeans needs a non-empty [n, d] matrix, got shape {tuple(x.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x = x.detach()
    n = x.shape[0]
    if init == "kmeans++":
        centroids = kmeans_plus_plus(x, k, seed=seed)
    elif init == "random":
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        perm = torch.randperm(n, generator=g)
        idx = perm.repeat(-(-k // n))[:k]
        centroids = x[idx.to(x.device)].clone()
    else:
        raise ValueError(f"init must be 'kmeans++' or 'random', got {init!r}")

    threshold = float(tol) * float((x * x).sum(1).mean()) if tol > 0 else -1.0
    arange_k = torch.arange(k, device=x.device)
    assign = nearest(x, centroids)
    for _ in range(iters):
        sums = torch.zeros_like(centroids)
        counts = torch.zeros(k, dtype=x.dtype, device=x.device)
        for s in range(0, n, _CHUNK):
            onehot = (assign[s:s + _CHUNK, None] == arange_k).to(x.dtype)  # [chunk, k]
            sums += onehot.T @ x[s:s + _CHUNK]
            counts += onehot.sum(0)
        # Empty clusters keep their centroid (no 0/0); they may pick up points later.
        new = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centroids)
        shift = float(((new - centroids) ** 2).sum(1).max())
        centroids = new
        assign = nearest(x, centroids)
        if shift <= threshold:
            break
    return centroids, assign
