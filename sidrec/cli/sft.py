"""Supervised fine-tuning: base LM -> sft/ (writes the next item's SID).

CPU:   python -m sidrec.cli.sft --base results/models/tiny-ml-100k \
           --data results/ml-100k/data/items.parquet --sid results/ml-100k/sid.json \
           --out results/ml-100k/sft --scratch results/ml-100k/.scratch/sft --params '{}'
GPUs:  accelerate launch --num_processes 2 [--config_file config/accelerate/zero2.yaml] \
           -m sidrec.cli.sft ...   (same arguments)
--data names items.parquet; train/valid.parquet are read from the same folder.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..data.tables import read_items, read_samples
from ..lm.sft import SFTConfig, train_sft
from ..sid import read_sid_json
from . import check_devices, parse_params


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="base model folder (save_pretrained layout)")
    ap.add_argument("--data", required=True, help="items.parquet; train/valid beside it")
    ap.add_argument("--sid", required=True, help="sid.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--scratch", required=True, help="resumable trainer state, outside --out")
    ap.add_argument("--params", default="{}", help="JSON object of SFTConfig fields")
    args = ap.parse_args(argv)
    check_devices()

    config = SFTConfig.from_dict(parse_params(args.params))
    items = read_items(args.data)
    data_dir = Path(args.data).parent
    train = read_samples(data_dir / "train.parquet", len(items))
    valid = read_samples(data_dir / "valid.parquet", len(items))
    codes = read_sid_json(args.sid, n_items=len(items))
    train_sft(args.base, train, valid, codes, items["title"].tolist(), args.out, config,
              scratch_dir=args.scratch)


if __name__ == "__main__":
    main()
