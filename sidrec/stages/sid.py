"""Stage `sid`: quantiser codes -> one unique semantic ID per item (sid.json + metadata).

Separate from `quantize` so that the assignment can be re-run or audited without
retraining the quantiser."""
from __future__ import annotations

from ..quantize import load_quantizer
from ..sid import assign_unique_sids, write_sid_json, write_sid_meta
from .embeddings import load_embeddings


def build_sids(quantizer_path, embeddings_path, sid_path, meta_path, *, codebook_size: int, log=print) -> dict:
    quantizer = load_quantizer(quantizer_path)
    codes = quantizer.encode(load_embeddings(embeddings_path))
    sids, meta = assign_unique_sids(codes, codebook_size)
    meta["quantizer"] = quantizer.method
    write_sid_json(sid_path, sids)
    write_sid_meta(meta_path, meta)
    log(f"{len(sids)} items, {sids.shape[1]} levels, collisions before {meta['collisions_before']}, "
        f"after {meta['collisions_after']}, extra level {meta['extra_level']}")
    return meta
