"""Constrained top-K recommendation for the valid and test rows: an LM folder -> predictions.

CPU:   python -m sidrec.cli.predict --model results/ml-100k/sft \
           --items results/ml-100k/data/items.parquet --sid results/ml-100k/sid.json \
           --valid results/ml-100k/data/valid.parquet --test results/ml-100k/data/test.parquet \
           --out-valid v.parquet --out-test t.parquet --params '{"ks": [1,5,10], "beam_width": 50}'
GPU:   accelerate launch --num_processes 1 -m sidrec.cli.predict --device cuda ...
Every returned item is a catalogue item (the decoder walks the SID trie); an invalid
output stops the job.
"""
from __future__ import annotations

from ..evaluate import EvaluateConfig
from ..stages.predict import predict_lm
from . import check_devices, parse_params, parser


def main(argv=None):
    ap = parser(__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--items", required=True, help="items.parquet")
    ap.add_argument("--sid", required=True, help="sid.json")
    ap.add_argument("--valid", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--out-valid", required=True)
    ap.add_argument("--out-test", required=True)
    args = ap.parse_args(argv)
    check_devices(args.device)
    predict_lm(model=args.model, items=args.items, sid=args.sid,
               splits={"valid": (args.valid, args.out_valid), "test": (args.test, args.out_test)},
               config=EvaluateConfig.from_dict(parse_params(args.params)), device=args.device)


if __name__ == "__main__":
    main()
