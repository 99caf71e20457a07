"""Stage `rl`: sft/ -> rl/ (GRPO with recommendation rewards, selected on valid)."""
from __future__ import annotations

from ..data.tables import read_items, read_samples
from ..rl.grpo import RLConfig, train_rl
from ..sid import read_sid_json


def run_rl(*, sft, train, valid, items, sid, out, scratch, params: dict, device: str = "cpu",
           log=print) -> dict:
    """Every file it reads is named: the SFT model folder, the train/valid samples,
    items.parquet and sid.json. `params`: the dataset's resolved `rl` settings."""
    config = RLConfig.from_dict(dict(params))
    item_table = read_items(items)
    n_items = len(item_table)
    codes = read_sid_json(sid, n_items=n_items)
    return train_rl(sft, read_samples(train, n_items), read_samples(valid, n_items), codes,
                    item_table["title"].tolist(), out, config, scratch_dir=scratch, device=device, log=log)
