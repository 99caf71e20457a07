"""Embed the items table.

CPU:        python -m sidrec.cli.embed --items items.parquet --out embeddings.npy
GPUs:       accelerate launch --num_processes 4 -m sidrec.cli.embed --items ... --out ...
Each process embeds one contiguous block of items; rank 0 gathers the blocks in rank
order and writes the matrix atomically.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from ..data.tables import read_items
from ..embed import embed_texts
from ..io import atomic_path
from . import check_devices, parse_params


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--params", default="{}", help="JSON: model, batch_size, max_length")
    args = ap.parse_args(argv)
    check_devices()
    hp = parse_params(args.params)
    items = read_items(args.items)

    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    device = None
    if world > 1:
        import torch
        local = int(os.environ.get("LOCAL_RANK", 0))
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    block = embed_texts(items["text"].tolist(), hp.get("model", "all-MiniLM-L6-v2"),
                        batch_size=hp.get("batch_size", 128), max_length=hp.get("max_length", 128),
                        device=device, rank=rank, world_size=world, progress=rank == 0)
    out = Path(args.out)
    if world == 1:
        with atomic_path(out, suffix=".npy") as tmp:
            np.save(tmp, block)
        print(f"embedded {len(block)} items -> {out} {block.shape}")
        return
    # Several processes: blocks meet on a shared scratch folder beside the output
    # (works on one node and on a shared filesystem), then rank 0 concatenates in order.
    import torch.distributed as dist
    from accelerate import PartialState

    state = PartialState()
    scratch = out.parent / f".{out.name}.parts"
    scratch.mkdir(parents=True, exist_ok=True)
    np.save(scratch / f"{rank:05d}.npy", block)
    state.wait_for_everyone()
    if state.is_main_process:
        parts = [np.load(scratch / f"{r:05d}.npy") for r in range(world)]
        matrix = np.concatenate(parts)
        assert len(matrix) == len(items), (len(matrix), len(items))
        with atomic_path(out, suffix=".npy") as tmp:
            np.save(tmp, matrix)
        for r in range(world):
            (scratch / f"{r:05d}.npy").unlink()
        scratch.rmdir()
        print(f"embedded {len(matrix)} items on {world} processes -> {out} {matrix.shape}")
    state.wait_for_everyone()
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
