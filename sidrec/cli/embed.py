"""Embed the items table: items.parquet -> embeddings.npy.

CPU:   python -m sidrec.cli.embed --items items.parquet --out embeddings.npy --params '{}'
GPU:   accelerate launch --num_processes 1 -m sidrec.cli.embed --device cuda ...
GPUs:  accelerate launch --num_processes 4 -m sidrec.cli.embed --device cuda ...
       (each process embeds one block of items; rank 0 writes the matrix)
"""
from __future__ import annotations

from ..embed import EncoderConfig
from ..stages.embed import embed_items
from . import check_devices, parse_params, parser


def main(argv=None):
    ap = parser(__doc__)
    ap.add_argument("--items", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    check_devices(args.device)
    embed_items(args.items, args.out, EncoderConfig.from_dict(parse_params(args.params)), device=args.device)


if __name__ == "__main__":
    main()
