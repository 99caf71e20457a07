"""Stage `quantize`: embeddings.npy -> the quantiser checkpoint (RQ-VAE or RQ-KMeans)."""
from __future__ import annotations

import time

from ..quantize import save_quantizer, train_quantizer
from .embeddings import load_embeddings


def fit_quantizer(embeddings_path, out_path, params: dict, *, device: str = "cpu", log=print) -> dict:
    """`params`: the config's `quantizer` section (method + that method's settings)."""
    emb = load_embeddings(embeddings_path)
    start = time.perf_counter()
    quantizer, report = train_quantizer(emb, dict(params), device=device, log=log)
    save_quantizer(out_path, quantizer, report)
    log(f"{params.get('method', 'rqvae')} on {device}: {emb.shape[0]} items, "
        f"{time.perf_counter() - start:.1f}s, collision rate {report.get('collision_rate')}, "
        f"usage {report.get('codebook_usage', report.get('usage'))}")
    return report
