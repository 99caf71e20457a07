"""Stage `embed`: items.parquet -> embeddings.npy, on one process or across several.

Under `accelerate launch` each process embeds one contiguous block of items; blocks meet
in a scratch folder beside the output (one node or a shared filesystem) and rank 0
concatenates them in rank order and writes the matrix atomically.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.tables import read_items
from ..embed import EncoderConfig, embed_texts
from ..io import atomic_path


def embed_items(items_path, out_path, config: EncoderConfig, *, device: str = "cpu", log=print) -> None:
    items = read_items(items_path)
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    if device == "cuda" and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    block = embed_texts(items["text"].tolist(), config.model, batch_size=config.batch_size,
                        max_length=config.max_length, device=device, rank=rank, world_size=world,
                        progress=rank == 0)
    out = Path(out_path)
    if world == 1:
        with atomic_path(out, suffix=".npy") as tmp:
            np.save(tmp, block)
        log(f"embedded {len(block)} items on {device} -> {out} {block.shape}")
        return
    import torch.distributed as dist
    from accelerate import PartialState

    state = PartialState()
    scratch = out.parent / f".{out.name}.parts"
    scratch.mkdir(parents=True, exist_ok=True)
    np.save(scratch / f"{rank:05d}.npy", block)
    state.wait_for_everyone()
    if state.is_main_process:
        matrix = np.concatenate([np.load(scratch / f"{r:05d}.npy") for r in range(world)])
        if len(matrix) != len(items):
            raise RuntimeError(f"gathered {len(matrix)} rows for {len(items)} items")
        with atomic_path(out, suffix=".npy") as tmp:
            np.save(tmp, matrix)
        for r in range(world):
            (scratch / f"{r:05d}.npy").unlink()
        scratch.rmdir()
        log(f"embedded {len(matrix)} items on {world} processes -> {out} {matrix.shape}")
    state.wait_for_everyone()
    if dist.is_initialized():
        dist.destroy_process_group()
