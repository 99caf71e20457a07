"""Supervised fine-tuning: base LM -> sft/ (writes the next item's SID).

CPU:   python -m sidrec.cli.sft --base results/models/tiny-ml-100k \
           --train results/ml-100k/data/train.parquet --valid results/ml-100k/data/valid.parquet \
           --items results/ml-100k/data/items.parquet --sid results/ml-100k/sid.json \
           --out results/ml-100k/sft --scratch results/ml-100k/.scratch/sft --params '{}'
GPU:   accelerate launch --num_processes 1 -m sidrec.cli.sft --device cuda ...   (same arguments)
GPUs:  accelerate launch --num_processes 2 --config_file config/accelerate/zero2.yaml \
           -m sidrec.cli.sft --device cuda ...   (DeepSpeed ZeRO-2)
"""
from __future__ import annotations

from ..stages.sft import run_sft
from . import check_devices, parse_params, parser


def main(argv=None):
    ap = parser(__doc__)
    ap.add_argument("--base", required=True, help="base model folder (save_pretrained layout)")
    ap.add_argument("--train", required=True, help="train.parquet")
    ap.add_argument("--valid", required=True, help="valid.parquet (checkpoint selection)")
    ap.add_argument("--items", required=True, help="items.parquet")
    ap.add_argument("--sid", required=True, help="sid.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--scratch", required=True, help="resumable trainer state, outside --out")
    ap.add_argument("--teacher", default=None,
                    help="sasrec.ckpt to distil from (needed when the params' distill_weight > 0)")
    args = ap.parse_args(argv)
    check_devices(args.device)
    run_sft(base=args.base, train=args.train, valid=args.valid, items=args.items, sid=args.sid,
            out=args.out, scratch=args.scratch, params=parse_params(args.params), device=args.device,
            teacher=args.teacher)


if __name__ == "__main__":
    main()
