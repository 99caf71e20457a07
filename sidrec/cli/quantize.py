"""Train the quantiser: embeddings.npy -> rqvae.ckpt (RQ-VAE, or RQ-KMeans by config).

CPU:   python -m sidrec.cli.quantize --embeddings embeddings.npy --out rqvae.ckpt --params '{"method": "rqvae"}'
GPU:   accelerate launch --num_processes 1 -m sidrec.cli.quantize --device cuda ...
       (one process: the full-batch RQ-VAE fits on one GPU; RQ-KMeans runs on the CPU)
"""
from __future__ import annotations

from ..stages.quantize import fit_quantizer
from . import check_devices, parse_params, parser


def main(argv=None):
    ap = parser(__doc__)
    ap.add_argument("--embeddings", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    check_devices(args.device)
    fit_quantizer(args.embeddings, args.out, parse_params(args.params), device=args.device)


if __name__ == "__main__":
    main()
