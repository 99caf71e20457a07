"""Reinforcement learning (GRPO): sft/ -> rl/ (selected on valid NDCG@k).

CPU:   python -m sidrec.cli.rl --sft results/ml-100k/sft \
           --train results/ml-100k/data/train.parquet --valid results/ml-100k/data/valid.parquet \
           --items results/ml-100k/data/items.parquet --sid results/ml-100k/sid.json \
           --embeddings results/ml-100k/embeddings.npy --out results/ml-100k/rl --scratch results/ml-100k/.scratch/rl --params '{}'
GPU:   accelerate launch --num_processes 1 -m sidrec.cli.rl --device cuda ...   (same arguments)
GPUs:  accelerate launch --num_processes 2 --config_file config/accelerate/zero2.yaml \
           -m sidrec.cli.rl --device cuda ...   (DeepSpeed ZeRO-2)
"""
from __future__ import annotations

from ..stages.rl import run_rl
from . import check_devices, parse_params, parser


def main(argv=None):
    ap = parser(__doc__)
    ap.add_argument("--sft", required=True, help="the SFT model folder (save_pretrained layout)")
    ap.add_argument("--train", required=True, help="train.parquet (the RL rows)")
    ap.add_argument("--valid", required=True, help="valid.parquet (step selection)")
    ap.add_argument("--items", required=True, help="items.parquet")
    ap.add_argument("--sid", required=True, help="sid.json")
    ap.add_argument("--embeddings", help="embeddings.npy (item text vectors; read by the similarity reward)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--scratch", required=True, help="resumable trainer state, outside --out")
    args = ap.parse_args(argv)
    check_devices(args.device)
    run_rl(sft=args.sft, train=args.train, valid=args.valid, items=args.items, sid=args.sid,
           embeddings=args.embeddings, out=args.out, scratch=args.scratch, params=parse_params(args.params), device=args.device)


if __name__ == "__main__":
    main()
