"""SASRec baseline: train with early stopping on valid, rank valid and test.

CPU:   python -m sidrec.cli.sasrec --items items.parquet --train train.parquet \
           --valid valid.parquet --test test.parquet --model-out sasrec.ckpt \
           --out-valid v.parquet --out-test t.parquet --max-len 20 --k 20 --params '{}'
GPU:   accelerate launch --num_processes 1 -m sidrec.cli.sasrec --device cuda ...
"""
from __future__ import annotations

from ..stages.sasrec import train_and_predict_sasrec
from . import check_devices, parse_params, parser


def main(argv=None):
    ap = parser(__doc__)
    for name in ("--items", "--train", "--valid", "--test", "--model-out", "--out-valid", "--out-test"):
        ap.add_argument(name, required=True)
    ap.add_argument("--max-len", type=int, required=True, help="history items kept (datasets.NAME.max_history)")
    ap.add_argument("--k", type=int, required=True, help="length of the ranked lists")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args(argv)
    check_devices(args.device)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    train_and_predict_sasrec(
        items=args.items, train=args.train, valid=args.valid, model_out=args.model_out,
        splits={"valid": (args.valid, args.out_valid), "test": (args.test, args.out_test)},
        params=parse_params(args.params), max_len=args.max_len, k=args.k, device=args.device)


if __name__ == "__main__":
    main()
