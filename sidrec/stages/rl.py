"""Stage `rl`: sft/ -> rl/ (GRPO with recommendation rewards, selected on valid)."""
from __future__ import annotations

import numpy as np

from ..data.tables import read_items, read_samples
from ..errors import InputError
from ..rl.grpo import RLConfig, train_rl
from ..sid import read_sid_json


def run_rl(*, sft, train, valid, items, sid, out, scratch, params: dict, embeddings=None,
           device: str = "cpu", log=print) -> dict:
    """Every file it reads is named: the SFT model folder, the train/valid samples,
    items.parquet, sid.json and (for the similarity reward) embeddings.npy. `params`:
    the dataset's resolved `rl` settings."""
    config = RLConfig.from_dict(dict(params))
    item_table = read_items(items)
    n_items = len(item_table)
    codes = read_sid_json(sid, n_items=n_items)
    vectors = None
    if config.rewards.get("similarity"):
        vectors = read_item_vectors(embeddings, n_items)
    return train_rl(sft, read_samples(train, n_items), read_samples(valid, n_items), codes,
                    item_table["title"].tolist(), out, config, scratch_dir=scratch, device=device, log=log,
                    item_vectors=vectors)


def read_item_vectors(path, n_items: int) -> np.ndarray:
    """embeddings.npy as float [n_items, dim], checked (no pickles)."""
    if path is None:
        raise InputError("rl", "the similarity reward needs the item embeddings (--embeddings)",
                         key="rewards.similarity")
    try:
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(path, f"not a readable .npy array of item vectors: {err}") from None
    if vectors.ndim != 2 or vectors.shape[0] != n_items or not np.issubdtype(vectors.dtype, np.floating):
        raise InputError(path, f"expected float item vectors [{n_items}, dim] (one row per item), got "
                               f"{vectors.dtype} {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise InputError(path, "item vectors contain NaN or infinity")
    return vectors
