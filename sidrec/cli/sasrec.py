"""SASRec baseline: train one configuration with early stopping on valid.

The rule `sasrec` runs this once per point of `baselines.sasrec_grid`; the rule
`sasrec_select` then keeps the best on valid and ranks valid and test with it.

CPU:   python -m sidrec.cli.sasrec --items items.parquet --train train.parquet \
           --valid valid.parquet --model-out sasrec.ckpt --max-len 20 --params '{}'
GPU:   accelerate launch --num_processes 1 -m sidrec.cli.sasrec --device cuda ...
"""
from __future__ import annotations

from ..stages.sasrec import train_sasrec_candidate
from . import check_devices, parse_params, parser


def main(argv=None):
    ap = parser(__doc__)
    for name in ("--items", "--train", "--valid", "--model-out"):
        ap.add_argument(name, required=True)
    ap.add_argument("--max-len", type=int, required=True, help="history items kept (datasets.NAME.max_history)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args(argv)
    check_devices(args.device)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    train_sasrec_candidate(items=args.items, train=args.train, valid=args.valid, model_out=args.model_out,
                           params=parse_params(args.params), max_len=args.max_len, device=args.device)


if __name__ == "__main__":
    main()
