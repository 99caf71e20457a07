"""Benchmark RQ-VAE training at MiniOneRec's scale (3,686 x 2,560, 3 x 256 codes,
10,000 full-batch epochs; target <= 60 s on one H100).

    # one GPU, the real scale
    python bench/rqvae_bench.py --device cuda --out benchmarks/rqvae_h100.json
    # the same with TF32 matmuls; or without the CUDA graph, for comparison
    python bench/rqvae_bench.py --device cuda --tf32 --out benchmarks/rqvae_h100_tf32.json
    python bench/rqvae_bench.py --device cuda --no-cuda-graph --out benchmarks/rqvae_h100_eager.json
    # a quick CPU smoke run
    python bench/rqvae_bench.py --n 500 --dim 256 --epochs 50 --device cpu --out /tmp/rqvae_cpu.json

Times k-means initialisation apart from training, reports epochs/s, total seconds and
the collision rate, prints one summary line and writes JSON (options, environment,
the training report) to --out.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sidrec.io import write_json  # noqa: E402
from sidrec.quantize.rqvae import RQVAEConfig, train_rqvae  # noqa: E402


def make_data(spec: str, n: int, dim: int, seed: int) -> np.ndarray:
    """'random' (standard normal), 'clustered' (a 64-centre Gaussian mixture, like topical
    text embeddings), or a path to a float [n, dim] .npy file."""
    rng = np.random.default_rng(seed)
    if spec == "random":
        return rng.standard_normal((n, dim), dtype=np.float32)
    if spec == "clustered":
        centres = rng.standard_normal((64, dim), dtype=np.float32)
        which = rng.integers(0, 64, n)
        return (centres[which] + 0.3 * rng.standard_normal((n, dim), dtype=np.float32)).astype(np.float32)
    return np.load(spec).astype(np.float32)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data", default="random", help="random | clustered | path/to/embeddings.npy")
    g.add_argument("--n", type=int, default=3686, help="items (ignored for a .npy file)")
    g.add_argument("--dim", type=int, default=2560, help="embedding width (ignored for a .npy file)")
    g = p.add_argument_group("model and training")
    g.add_argument("--levels", type=int, default=3)
    g.add_argument("--codebook-size", type=int, default=256)
    g.add_argument("--epochs", type=int, default=10000)
    g.add_argument("--batch-size", type=int, default=None, help="default: full batch")
    g.add_argument("--kmeans-iters", type=int, default=100)
    g.add_argument("--sinkhorn", action="store_true", help="Sinkhorn assignment on the last level")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("execution")
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    g.add_argument("--compile", action="store_true", help="torch.compile the loss (default off)")
    g.add_argument("--no-cuda-graph", action="store_true",
                   help="launch every kernel from Python instead of replaying a captured CUDA graph")
    g.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on CUDA (default: full fp32)")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    g.add_argument("--out", default="benchmarks/rqvae_bench.json")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    x = make_data(args.data, args.n, args.dim, args.seed)
    config = RQVAEConfig(input_dim=x.shape[1], levels=args.levels, codebook_size=args.codebook_size,
                         epochs=args.epochs, batch_size=args.batch_size, kmeans_iters=args.kmeans_iters,
                         sinkhorn=args.sinkhorn, seed=args.seed)
    if args.device.startswith("cuda"):
        torch.zeros(1, device=args.device)  # CUDA context start-up is not part of the timing
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    _, report = train_rqvae(x, config, device=args.device, log=lambda m: print(m, flush=True),
                            compile=args.compile, cuda_graph=not args.no_cuda_graph)
    total = time.perf_counter() - t0

    env = {"torch": torch.__version__, "device": args.device, "threads": torch.get_num_threads()}
    if args.device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
        env["max_memory_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    result = {"args": vars(args), "env": env, "n_items": int(x.shape[0]), "dim": int(x.shape[1]),
              "total_seconds": round(total, 3), "kmeans_init_seconds": report["kmeans_init_seconds"],
              "train_seconds": report["train_seconds"], "epochs_per_second": report["epochs_per_second"],
              "collision_rate": report["collision_rate"], "final_recon_loss": report["final_recon_loss"],
              "codebook_usage": report["codebook_usage"], "report": report}
    write_json(args.out, json.loads(json.dumps(result, default=str)))
    print(f"rqvae_bench n={x.shape[0]} dim={x.shape[1]} L={args.levels} K={args.codebook_size} "
          f"epochs={args.epochs} device={env.get('gpu', args.device)} compile={args.compile} "
          f"cuda_graph={report['cuda_graph']} tf32={args.tf32} "
          f"kmeans_init={report['kmeans_init_seconds']:.2f}s train={report['train_seconds']:.2f}s "
          f"epochs/s={report['epochs_per_second']:.0f} total={total:.2f}s "
          f"recon={report['final_recon_loss']:.5f} collision_rate={report['collision_rate']:.4f} "
          f"usage={[round(u, 3) for u in report['codebook_usage']]} -> {args.out}", flush=True)
    return result


if __name__ == "__main__":
    main()
