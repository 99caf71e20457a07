"""Bounded load test of `python -m sidrec.serve` on the loopback address: a fixed number of
concurrent clients, each posting /recommend back to back for a fixed time, then it stops.
Requests/s and p50/p99 latency per concurrency, with batching on (concurrent requests
gathered into one decoder batch) and off (--max-batch 1: one forward per request).

    # the tiny model on the CPU (what bench/RESULTS.md reports)
    python bench/serve_load.py --results results/ml-100k --model sft --threads 1 \
        --out benchmarks/serve_load_cpu.json
    # SmolLM2 on a GPU: plain beam and exact decoding, bf16 and float32 weights, the
    # clients spread over 4 processes so that the load generator does not limit the load
    python bench/serve_load.py --results results/ml-100k --model sft --device cuda \
        --decode beam exact --dtype bfloat16 float32 --client-processes 4 \
        --out benchmarks/serve_load_gpu.json

The server runs in its own process, started and stopped here once per batching setting;
the clients are one asyncio loop of httpx clients in this process. Histories are the
valid split's (data/valid.parquet), drawn seeded, k=10, history excluded, so every
request costs what a real one does. A request that fails (non-200) is counted and kept
out of the latency percentiles. Each cell also reads the server's decoder totals
(/health "decoding") before and after: the decoder's milliseconds per batch and its
share of the wall clock (the rest is HTTP, JSON and waiting for requests), and the share
of rows the exact decoder had to widen. And the server's own latencies over the measured
window (/health's histograms, read when the window opens and closes): inside the app
(`app p99`: body read to last byte sent) and in the batcher (`queue+decode p99`: queue
and decoder): what the client's p99 has beyond the app's is HTTP outside the app, the
event loop and the load generator.
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import multiprocessing
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
sys.path.insert(0, str(ROOT))     # the repo's sidrec, however this script is started
from sidrec.serve.latency import percentile_ms  # noqa: E402


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
    server.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false",
                        help="the server decodes beam eagerly on CUDA instead of replaying CUDA graphs")
    server.add_argument("--dtype", nargs="+", choices=("auto", "bfloat16", "float32"), default=["auto"],
                        help="the model's weights to measure (auto: the server's default for the device)")
    load = ap.add_argument_group("the load")
    load.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    load.add_argument("--seconds", type=float, default=10.0, help="measured time per concurrency")
    load.add_argument("--warmup-seconds", type=float, default=2.0, help="unmeasured load before each")
    load.add_argument("--k", type=int, default=10)
    load.add_argument("--seed", type=int, default=0)
    load.add_argument("--client-processes", type=int, default=1,
                      help="processes the clients are spread over (more where the load generator's CPU limits it)")
    ap.add_argument("--out", type=Path, default=None, help="JSON of every measurement")
    return ap.parse_args(argv)


def ms(value: float | None) -> str:
    """A latency for the table; "-" where no request was answered in the window."""
    return "-" if value is None else f"{value:.1f}"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"


def decoder_cells(row: dict) -> str:
    d = row.get("decoder")
    if not d:
        return "-"
    graphs = "" if d.get("graph_captures") is None else f", {d['graph_captures']} graph captures"
    return (f"{d['ms_per_batch']:.1f} ms/batch, busy {pct(d['busy_fraction'])}, "
            f"widened {pct(d['widened_rows_fraction'])}, {d['tokens_per_row']:.0f} tokens/row{graphs}")


def server_cells(row: dict) -> str:
    s = row.get("server")
    if not s:
        return "-"
    return (f"app p50/p99 {ms(s['app_p50_ms'])}/{ms(s['app_p99_ms'])} ms, "
            f"queue+decode p50/p99 {ms(s['queue_decode_p50_ms'])}/{ms(s['queue_decode_p99_ms'])} ms")


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

    def __init__(self, args, max_batch: int, decode: str, dtype: str, log_path: Path):
        self.port = free_port()
        cmd = [sys.executable, "-m", "sidrec.serve", "--results", str(args.results), "--device", args.device,
               "--port", str(self.port), "--max-batch", str(max_batch), "--max-wait-ms", str(args.max_wait_ms),
               "--decode", decode]
        cmd += ["--model", args.model] if args.model else []
        cmd += ["--dtype", dtype] if dtype != "auto" else []
        cmd += [] if args.cuda_graphs else ["--no-cuda-graphs"]
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


async def drive(url: str, clients: list[int], concurrency: int, measure_from: float, stop_at: float,
                pool: list[list[int]], k: int) -> tuple[list[float], int]:
    """The clients numbered `clients` (of `concurrency`), posting back to back until
    `stop_at` (wall clock, time.time()) -> (latencies in s answered inside the window
    [measure_from, stop_at], failures there)."""
    latencies: list[float] = []
    failures = 0

    async def client(index: int):
        # One connection of its own per client, as independent callers would have
        # (one shared pool of 64 connections costs the client more CPU per request
        # than the server spends).
        nonlocal failures
        i = index
        async with httpx.AsyncClient(base_url=url, timeout=60) as own:
            while True:
                sent = time.time()
                if sent >= stop_at:
                    return
                response = await own.post("/recommend", json={"history": pool[i % len(pool)], "k": k})
                done = time.time()
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

    await asyncio.gather(*(client(c) for c in clients))
    return latencies, failures


def drive_in_process(job: tuple) -> tuple[list[float], int]:
    return asyncio.run(drive(*job))


async def run_load(url: str, concurrency: int, seconds: float, warmup: float, pool: list[list[int]],
                   k: int, processes: int = 1) -> dict:
    """`concurrency` clients posting back to back: `warmup` s unmeasured, then `seconds`.
    With `processes` > 1 the clients are dealt round-robin to that many processes, so
    that the load generator's own CPU (httpx, JSON) does not limit the load."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        health = (await http.get("/health")).json()
        before, decoding_before = health["batching"], health.get("decoding") or {}
        began = time.time()
        measure_from = time.time() + warmup + (1.0 if processes > 1 else 0.0)  # + process start
        stop_at = measure_from + seconds
        groups = [list(range(p, concurrency, processes)) for p in range(min(processes, concurrency))]
        jobs = [(url, g, concurrency, measure_from, stop_at, pool, k) for g in groups]

        async def health_at(moment: float) -> dict:
            await asyncio.sleep(max(0.0, moment - time.time()))
            return (await http.get("/health")).json()

        # The server's histograms when the window opens and closes, read while the clients run.
        edges = asyncio.gather(health_at(measure_from), health_at(stop_at))
        if len(jobs) == 1:
            results = [await drive(*jobs[0])]
        else:
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(len(jobs), mp_context=context) as workers:
                results = await asyncio.gather(*(asyncio.wrap_future(workers.submit(drive_in_process, job))
                                                 for job in jobs))
        opened, closed = await edges
        latencies = [x for lat, _ in results for x in lat]
        failures = sum(f for _, f in results)
        health = (await http.get("/health")).json()
        after, decoding_after = health["batching"], health.get("decoding") or {}
        elapsed = time.time() - began
    ms = np.asarray(latencies) * 1000
    batches = after["batches"] - before["batches"]
    # The server's decoder over warmup and window (and process start): its share of each batch's time, and
    # what it did (rows widened past the first pass, tokens fed through the model).
    decoded = {key: decoding_after[key] - decoding_before.get(key, 0) for key in decoding_after
               if isinstance(decoding_after[key], (int, float)) and not isinstance(decoding_after[key], bool)}
    decoder = None
    if decoded.get("batches"):
        decoder = {"batches": decoded["batches"], "rows": decoded["rows"],
                   "ms_per_batch": 1000 * decoded["seconds"] / decoded["batches"],
                   "busy_fraction": decoded["seconds"] / elapsed,
                   "widened_rows_fraction": decoded.get("widened_rows", 0) / decoded["rows"],
                   "rescored_per_row": decoded.get("rescored_candidates", 0) / decoded["rows"],
                   "tokens_per_row": (decoded.get("prefill_tokens", 0) + decoded.get("decode_tokens", 0))
                   / decoded["rows"]}
        # CUDA graphs captured inside the cell (warm-up and window): each stalls the batches behind it
        graphs_before, graphs_after = decoding_before.get("cuda_graphs"), decoding_after.get("cuda_graphs")
        if graphs_after:
            decoder["graph_captures"] = graphs_after["captures"] - (graphs_before or {}).get("captures", 0)
            decoder["graph_eager_batches"] = graphs_after["eager"] - (graphs_before or {}).get("eager", 0)
    return {"concurrency": concurrency, "client_processes": len(jobs), "seconds": seconds, "requests": len(latencies), "failures": failures,
            "requests_per_s": len(latencies) / seconds,
            "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
            # over warmup and window together (the server counts every request)
            "mean_batch": (after["requests"] - before["requests"]) / batches if batches else None,
            "decoder": decoder, "server": server_latencies(opened, closed)}


def server_latencies(opened: dict, closed: dict) -> dict | None:
    """p50/p99 in ms of the requests the server finished between two /health reads,
    inside the app and in the batcher (None from a server without the histograms)."""
    out = {}
    for name, read in (("app", lambda h: h.get("recommend_latency_counts")),
                       ("queue_decode", lambda h: (h.get("batching") or {}).get("latency_counts"))):
        first, last = read(opened), read(closed)
        if first is None or last is None:
            return None
        window = [b - a for a, b in zip(first, last)]
        out[f"{name}_p50_ms"], out[f"{name}_p99_ms"] = percentile_ms(window, 50), percentile_ms(window, 99)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    args.results = Path(args.results).resolve()
    pool = histories(args.results, 4096, args.seed)
    rows, health = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for decode, dtype, setting in [(d, t, b) for d in args.decode for t in args.dtype for b in args.batching]:
            max_batch = args.max_batch if setting == "on" else 1
            server = Server(args, max_batch, decode, dtype, Path(tmp) / f"server_{decode}_{dtype}_{setting}.log")
            try:
                health = server.wait_ready()
                for concurrency in args.concurrency:
                    row = asyncio.run(run_load(server.url, concurrency, args.seconds, args.warmup_seconds,
                                               pool, args.k, args.client_processes))
                    row.update(decode=decode, dtype=health.get("dtype", dtype), batching=setting, max_batch=max_batch)
                    rows.append(row)
                    print(f"{decode:5s} {row['dtype']:8s} batching {setting:3s} (max_batch {max_batch:2d})  "
                          f"clients {concurrency:3d}  {row['requests_per_s']:8.1f} req/s  "
                          f"p50 {ms(row['p50_ms']):>8s} ms  p99 {ms(row['p99_ms']):>8s} ms  "
                          f"mean batch {row['mean_batch'] or 0:5.1f}  decoder {decoder_cells(row)}  "
                          f"server {server_cells(row)}  failures {row['failures']}", flush=True)
            finally:
                server.stop()
    report = {"results": str(args.results), "model": health and health["model"],
              "model_dir": health and health["model_dir"], "commit": health and health["commit"],
              "device": args.device, "cuda_graphs": args.cuda_graphs, "threads": args.threads,
              "max_wait_ms": args.max_wait_ms, "k": args.k,
              "cpu_count": os.cpu_count(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "rows": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print("\n| decode | weights | batching | clients | requests/s | p50 ms | p99 ms | mean batch "
          "| decoder ms/batch | decoder busy | rows widened | app p99 ms | queue+decode p99 ms |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        d, server = r["decoder"] or {}, r.get("server") or {}
        print(f"| {r['decode']} | {r['dtype']} | {r['batching']} (max {r['max_batch']}) | {r['concurrency']} | "
              f"{r['requests_per_s']:.1f} | {ms(r['p50_ms'])} | {ms(r['p99_ms'])} | {r['mean_batch'] or 0:.1f} | "
              f"{ms(d.get('ms_per_batch'))} | {pct(d.get('busy_fraction'))} | {pct(d.get('widened_rows_fraction'))} | "
              f"{ms(server.get('app_p99_ms'))} | {ms(server.get('queue_decode_p99_ms'))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
