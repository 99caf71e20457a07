"""One results folder -> a ready `Service`: model, tokenizer, items and SIDs loaded once."""
from __future__ import annotations

from pathlib import Path

from ..recommend import Recommender
from ..sid import sid_tokens
from .app import Service
from .artifacts import ResultsFolder, code_commit, history_limit, provenance_sha256, select_model
from .batcher import MicroBatcher
from .catalogue import Catalogue
from .engine import Engine

DTYPES = (None, "bfloat16", "float32")


def load_service(results, *, model: str | None = None, device: str | None = "cpu", max_batch: int = 32,
                 max_wait_ms: float = 5.0, max_history: int | None = None, beam_width: int = 50,
                 seed: int | None = None, decode: str = "exact", dtype: str | None = None,
                 cuda_graphs: bool = True) -> Service:
    """`results`: results/DATASET (its run of `seed`, default the lowest seed there) or
    results/DATASET/seed-S; `model`: "sft", "rl" or None (the one chosen on valid
    NDCG@10); `device` as `Recommender.from_artifacts`; `max_batch`/`max_wait_ms`: the
    gathering of concurrent requests (max_batch 1: none); `max_history`: None reads the
    model's limit from the run; `decode`: "exact" or "beam" (see `Engine`); `dtype`:
    "bfloat16", "float32" or None: float32 for exact decoding (no float32 rescoring pass
    to add: on an H200, 2.5x the requests/s of exact bf16), else the device's default
    (bfloat16 on CUDA, float32 on the CPU); `cuda_graphs`: see `Engine`. InputError
    naming the missing artifact."""
    folder = ResultsFolder.find(Path(results), seed)
    model = model or select_model(folder)
    folder.check(model)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if dtype is None and decode == "exact":
        dtype = "float32"
    recommender = Recommender.from_artifacts(folder.model_dir(model), folder.items, folder.sid, device=device,
                                             dtype=dtype)
    builder = recommender.builder
    catalogue = Catalogue(builder.titles, sid_tokens(builder.codes))
    max_history = max_history or history_limit(folder, model)
    engine = Engine(recommender, beam_width=beam_width, decode=decode, cuda_graphs=cuda_graphs,
                    max_history=max_history)
    batcher = MicroBatcher(engine.run, max_batch=max_batch, max_wait_s=max_wait_ms / 1000)
    weights = next(recommender.model.parameters())
    info = {"model": model, "model_dir": str(folder.model_dir(model)), "dataset": folder.dataset,
            "commit": code_commit(), "provenance_sha256": provenance_sha256(folder),
            "device": str(weights.device), "dtype": str(weights.dtype).removeprefix("torch."), "decode": decode,
            "beam_width": engine.beam_width}
    return Service(catalogue, batcher, max_history, info, decoding=engine.stats)
