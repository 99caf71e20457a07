"""Constrained top-K recommendation for the valid and test rows: sft/ -> predictions.

CPU:   python -m sidrec.cli.predict --model results/ml-100k/sft \
           --data results/ml-100k/data/items.parquet --sid results/ml-100k/sid.json \
           --out-valid v.parquet --out-test t.parquet --params '{"ks": [1,5,10], "beam_width": 50}'
GPU:   the same; it uses the first visible GPU.
Every returned item is a catalogue item (the decoder walks the SID trie); the count of
invalid outputs is logged and must be 0.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ..data.tables import read_items, read_samples
from ..evaluate import predictions_frame, write_predictions
from ..lm.base import load_causal_lm
from ..recommend import Recommender
from ..sid import read_sid_json
from . import check_devices, parse_params


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="items.parquet; valid/test beside it")
    ap.add_argument("--sid", required=True)
    ap.add_argument("--out-valid", required=True)
    ap.add_argument("--out-test", required=True)
    ap.add_argument("--params", default="{}", help="JSON: ks, beam_width, batch_size, max_rows")
    args = ap.parse_args(argv)
    check_devices()
    hp = parse_params(args.params)
    k = max(hp.get("ks", [1, 3, 5, 10, 20]))

    items = read_items(args.data)
    codes = read_sid_json(args.sid, n_items=len(items))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model, tokenizer = load_causal_lm(args.model, dtype=dtype, device=device)
    recommender = Recommender(model, tokenizer, codes, items["title"].tolist())
    data_dir = Path(args.data).parent
    for split, out in (("valid", args.out_valid), ("test", args.out_test)):
        samples = read_samples(data_dir / f"{split}.parquet", len(items))
        if hp.get("max_rows"):
            samples = samples.iloc[: hp["max_rows"]].reset_index(drop=True)
        start = time.perf_counter()
        result = recommender.top_k(samples["history"], k, beam_width=hp.get("beam_width", 50),
                                   batch_size=hp.get("batch_size", 64))
        seconds = time.perf_counter() - start
        print(f"{split}: {len(samples)} rows in {seconds:.1f}s ({len(samples) / seconds:.1f} rows/s), "
              f"invalid outputs {result.invalid}, stats {result.stats}")
        if result.invalid:
            raise RuntimeError(f"{result.invalid} decoded outputs are not catalogue items")
        write_predictions(predictions_frame(samples, result.items, result.scores), out)


if __name__ == "__main__":
    main()
