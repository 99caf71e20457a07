"""Stage `sft`: base LM -> sft/ (writes the next item's SID, plus alignment tasks)."""
from __future__ import annotations

from ..baselines.sasrec import load_sasrec
from ..data.tables import read_items, read_samples
from ..lm.sft import SFTConfig, train_sft
from ..sid import read_sid_json


def run_sft(*, base, train, valid, items, sid, out, scratch, params: dict, device: str = "cpu",
            teacher=None, log=print) -> dict:
    """Every file it reads is named: the base model folder, the train/valid samples,
    items.parquet, sid.json and, when `distill_weight` > 0, the teacher (the seed's
    sasrec.ckpt). `params`: the dataset's resolved `sft` settings."""
    config = SFTConfig.from_dict(dict(params))
    # train_sft refuses distill_weight > 0 without a teacher, before any training.
    teacher_model = load_sasrec(teacher)[0] if config.distill_weight > 0 and teacher is not None else None
    item_table = read_items(items)
    n_items = len(item_table)
    codes = read_sid_json(sid, n_items=n_items)
    return train_sft(base, read_samples(train, n_items), read_samples(valid, n_items), codes,
                     item_table["title"].tolist(), out, config, scratch_dir=scratch, device=device,
                     log=log, teacher=teacher_model)
