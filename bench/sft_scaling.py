"""SFT scaling over GPU counts, through the very command line the `sft` rule runs
(`accelerate launch --num_processes N --config_file config/accelerate/... -m sidrec.cli.sft`,
see `launcher` in rules/common.smk), with the same global batch for every count.

For each count N: per-process batch = global_batch / N, no accumulation, `--steps`
optimizer steps, loss logged every step, one validation at the end. Prints and writes
a JSON summary: median step time, samples/s and tokens/s, speed-up and efficiency over
the first count, peak memory per GPU, and the loss trajectories with their largest
gap to the first count's (raw and over 10-step means).

    python bench/sft_scaling.py --base results/models/smollm2-135m --data results/X/data \
        --sid results/X/sid.json --gpus 1 2 --steps 200 --global-batch 128 --out $OUT/scaling.json
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = ROOT / "config" / "accelerate"


def launch_prefix(gpus: int, multi_gpu_config: str = "zero2.yaml", single_gpu_config: str = "single_gpu.yaml") -> str:
    """rules/common.smk `launcher`, for a given GPU count (kept in step with it)."""
    name = single_gpu_config if gpus == 1 else multi_gpu_config
    path = ACCELERATE / name
    extra = ""
    if path.name.startswith("zero"):
        extra = f" --deepspeed_config_file {shlex.quote(str(path.with_suffix('.json')))}"
    return f"accelerate launch --num_processes {gpus} --config_file {shlex.quote(str(path))}{extra} -m"


def window_means(losses: np.ndarray, w: int = 10) -> np.ndarray:
    n = len(losses) // w
    return losses[: n * w].reshape(n, w).mean(axis=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--data", required=True, help="the dataset's data/ folder (items, train, valid parquet)")
    ap.add_argument("--sid", required=True)
    ap.add_argument("--gpus", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--global-batch", type=int, default=128)
    ap.add_argument("--params", default="{}", help="extra SFT params (JSON)")
    ap.add_argument("--single-gpu-config", default="single_gpu.yaml",
                    help="accelerate config for 1 GPU (the rule's is single_gpu.yaml; zero2.yaml to compare like with like)")
    ap.add_argument("--work", default="/tmp/sft_scaling")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    runs = []
    for n in args.gpus:
        if args.global_batch % n:
            raise SystemExit(f"global batch {args.global_batch} is not divisible by {n} GPUs")
        hp = {"max_steps": args.steps, "eval_steps": args.steps, "logging_steps": 1, "max_valid_samples": 512,
              "batch_size": args.global_batch // n, "grad_accum": 1, **json.loads(args.params)}
        out = Path(args.work) / f"gpus{n}"
        data = Path(args.data)
        cmd = (f"{launch_prefix(n, single_gpu_config=args.single_gpu_config)} sidrec.cli.sft --device cuda"
               f" --base {shlex.quote(args.base)} --train {shlex.quote(str(data / 'train.parquet'))}"
               f" --valid {shlex.quote(str(data / 'valid.parquet'))} --items {shlex.quote(str(data / 'items.parquet'))}"
               f" --sid {shlex.quote(args.sid)}"
               f" --out {shlex.quote(str(out))} --scratch {shlex.quote(str(out) + '.scratch')}"
               f" --params {shlex.quote(json.dumps(hp))}")
        print(f"== {n} GPU(s): {cmd}", flush=True)
        start = time.perf_counter()
        subprocess.run(["bash", "-c", cmd], check=True, cwd=ROOT)
        wall = time.perf_counter() - start
        report = json.loads((out / "sft_report.json").read_text())
        losses = np.array([h["loss"] for h in report["train_loss"] if h["step"] >= 1])
        runs.append({"gpus": n, "command": cmd, "wall_seconds": round(wall, 1),
                     "median_step_seconds": report["median_step_seconds"],
                     "samples_per_second": report["steady_samples_per_second"],
                     "tokens_per_second": report["steady_tokens_per_second"],
                     "peak_gpu_memory_gib": report["peak_gpu_memory_gib"],
                     "effective_batch": report["effective_batch"], "steps": report["steps"],
                     "final_eval_loss": report["best_eval_loss"], "loss": losses.round(4).tolist()})
        print(json.dumps({k: v for k, v in runs[-1].items() if k != "loss"}), flush=True)

    ref = runs[0]
    for r in runs:
        r["speedup"] = round(r["samples_per_second"] / ref["samples_per_second"], 3)
        r["efficiency"] = round(r["speedup"] * ref["gpus"] / r["gpus"], 3)
        a, b = np.array(ref["loss"]), np.array(r["loss"])
        m = min(len(a), len(b))
        r["max_abs_loss_gap"] = round(float(np.abs(a[:m] - b[:m]).max()), 4)
        wa, wb = window_means(a[:m]), window_means(b[:m])
        r["max_abs_gap_10step_means"] = round(float(np.abs(wa - wb).max()), 4) if len(wa) else None
        r["last_50_mean_loss"] = round(float(b[max(0, m - 50):m].mean()), 4)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(runs, indent=1) + "\n")
    for r in runs:
        print(json.dumps({k: v for k, v in r.items() if k not in ("loss", "command")}))


if __name__ == "__main__":
    main()
