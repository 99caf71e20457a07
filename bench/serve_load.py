"""Bounded load test of `python -m sidrec.serve` on the loopback address: a fixed number of
concurrent clients, each posting /recommend back to back for a fixed time, then it stops.
Requests/s and p50/p99 latency per concurrency, with batching on (concurrent requests
gathered into one decoder batch) and off (--max-batch 1: one forward per request).

    # the tiny model on the CPU (what bench/RESULTS.md reports)
    python bench/serve_load.py --results results/ml-100k --model sft --threads 1 \
        --out benchmarks/serve_load_cpu.json
    # SmolLM2 on a GPU
    python bench/serve_load.py --results results/ml-100k --model sft --device cuda \
        --out benchmarks/serve_load_gpu.json

The server runs in its own process, started and stopped here once per batching setting;
the clients are one asyncio loop of httpx clients in this process. Histories are the
valid split's (data/valid.parquet), drawn seeded, k=10, history excluded, so every
request costs what a real one does. A request that fails (non-200) is counted and kept
out of the latency percentiles.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    server = ap.add_argument_group("the server")
    server.add_argument("--results", required=True, help="a pipeline's results/DATASET folder")
    server.add_argument("--model", choices=("sft", "rl"), default=None, help="default: the server's choice")
    server.add_argument("--device", default="cpu")
    server.add_argument("--threads", type=int, default=None, help="torch CPU threads of the server")
    server.add_argument("--max-batch", type=int, default=32, help="the server's batch limit with batching on")
    server.add_argument("--max-wait-ms", type=float, default=5.0)
    server.add_argument("--batching", nargs="+", choices=("on", "off"), default=["on", "off"])
    server.add_argument("--decode", nargs="+", choices=("exact", "beam"), default=["exact"],
                        help="the server's decode modes to measure, each with every batching setting")
    load = ap.add_argument_group("the load")
    load.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    load.add_argument("--seconds", type=float, default=10.0, help="measured time per concurrency")
    load.add_argument("--warmup-seconds", type=float, default=2.0, help="unmeasured load before each")
    load.add_argument("--k", type=int, default=10)
    load.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="JSON of every measurement")
    return ap.parse_args(argv)


def ms(value: float | None) -> str:
    """A latency for the table; "-" where no request was answered in the window."""
    return "-" if value is None else f"{value:.1f}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def histories(results: Path, n: int, seed: int) -> list[list[int]]:
    """`n` histories of the valid split, drawn seeded (with replacement)."""
    from sidrec.results import ResultsFolder

    valid = pd.read_parquet(ResultsFolder.find(results).data / "valid.parquet", columns=["history"])["history"]
    rng = random.Random(seed)
    return [list(map(int, valid.iloc[rng.randrange(len(valid))])) for _ in range(n)]


class Server:
    """`python -m sidrec.serve` in a child process on a free loopback port."""

    def __init__(self, args, max_batch: int, decode: str, log_path: Path):
        self.port = free_port()
        cmd = [sys.executable, "-m", "sidrec.serve", "--results", str(args.results), "--device", args.device,
               "--port", str(self.port), "--max-batch", str(max_batch), "--max-wait-ms", str(args.max_wait_ms),
               "--decode", decode]
        cmd += ["--model", args.model] if args.model else []
        cmd += ["--threads", str(args.threads)] if args.threads else []
        self.log = open(log_path, "w")
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        self.process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}: see {self.log.name}")
            try:
                return httpx.get(self.url + "/health", timeout=2).json()
            except httpx.TransportError:
                time.sleep(0.3)
        raise RuntimeError(f"the server did not answer within {timeout:.0f} s: see {self.log.name}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


async def run_load(url: str, concurrency: int, seconds: float, warmup: float, pool: list[list[int]],
                   k: int) -> dict:
    """`concurrency` clients posting back to back: `warmup` s unmeasured, then `seconds`."""
    latencies: list[float] = []
    failures = 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        start = time.perf_counter()
        measure_from = start + warmup
        stop_at = measure_from + seconds

        async def client(index: int):
            # One connection of its own per client, as independent callers would have
            # (one shared pool of 64 connections costs the client more CPU per request
            # than the server spends).
            nonlocal failures
            i = index
            async with httpx.AsyncClient(base_url=url, timeout=60) as own:
                while True:
                    sent = time.perf_counter()
                    if sent >= stop_at:
                        return
                    response = await own.post("/recommend", json={"history": pool[i % len(pool)], "k": k})
                    done = time.perf_counter()
                    i += concurrency
                    # Requests answered inside the window count, with their whole latency
                    # (queueing included): an overloaded server whose answers take longer
                    # than the window still gets its throughput and latency measured.
                    if not measure_from <= done <= stop_at:
                        continue
                    if response.status_code == 200:
                        latencies.append(done - sent)
                    else:
                        failures += 1

        before = (await http.get("/health")).json()["batching"]
        await asyncio.gather(*(client(c) for c in range(concurrency)))
        after = (await http.get("/health")).json()["batching"]
    ms = np.asarray(latencies) * 1000
    batches = after["batches"] - before["batches"]
    return {"concurrency": concurrency, "seconds": seconds, "requests": len(latencies), "failures": failures,
            "requests_per_s": len(latencies) / seconds,
            "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
            # over warmup and window together (the server counts every request)
            "mean_batch": (after["requests"] - before["requests"]) / batches if batches else None}


def main(argv=None) -> int:
    args = parse_args(argv)
    args.results = Path(args.results).resolve()
    pool = histories(args.results, 4096, args.seed)
    rows, health = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for decode, setting in [(d, b) for d in args.decode for b in args.batching]:
            max_batch = args.max_batch if setting == "on" else 1
            server = Server(args, max_batch, decode, Path(tmp) / f"server_{decode}_{setting}.log")
            try:
                health = server.wait_ready()
                for concurrency in args.concurrency:
                    row = asyncio.run(run_load(server.url, concurrency, args.seconds, args.warmup_seconds,
                                               pool, args.k))
                    row.update(decode=decode, batching=setting, max_batch=max_batch)
                    rows.append(row)
                    print(f"{decode:5s} batching {setting:3s} (max_batch {max_batch:2d})  clients {concurrency:3d}  "
                          f"{row['requests_per_s']:8.1f} req/s  p50 {ms(row['p50_ms']):>8s} ms  "
                          f"p99 {ms(row['p99_ms']):>8s} ms  mean batch {row['mean_batch'] or 0:5.1f}  "
                          f"failures {row['failures']}", flush=True)
            finally:
                server.stop()
    report = {"results": str(args.results), "model": health and health["model"],
              "model_dir": health and health["model_dir"], "commit": health and health["commit"],
              "device": args.device, "threads": args.threads, "max_wait_ms": args.max_wait_ms, "k": args.k,
              "cpu_count": os.cpu_count(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "rows": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print("\n| decode | batching | clients | requests/s | p50 ms | p99 ms | mean batch |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['decode']} | {r['batching']} (max {r['max_batch']}) | {r['concurrency']} | "
              f"{r['requests_per_s']:.1f} | {ms(r['p50_ms'])} | {ms(r['p99_ms'])} | {r['mean_batch'] or 0:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
