"""Concurrent requests gathered into one decoder batch.

One worker thread owns the model: it waits for a first request, then keeps gathering
until `max_batch` requests are in or `max_wait_s` has passed since that first one, and
runs them as one call of `run_batch`. Under load a forward pass serves many requests at
once (throughput grows with load). The wait is only spent under load: when the last
batch was a lone request and nothing else is queued, the new one runs at once (a single
client would otherwise pay `max_wait_s` on every request for company that never comes);
what queues meanwhile is gathered by the next batch.
`max_batch=1` turns gathering off (one forward per request, the baseline of
bench/serve_load.py). One thread also means one forward at a time: torch's own threads
are not fought over by several forwards.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Sequence

from .latency import LatencyHistogram


class QueueFull(RuntimeError):
    """More requests waiting than the server will hold (answered 503)."""


class MicroBatcher:
    """`run_batch(requests) -> results` (same length and order) is called on the worker
    thread; an exception it raises is the result of every request of that batch."""

    def __init__(self, run_batch: Callable[[Sequence[Any]], Sequence[Any]], *, max_batch: int = 32,
                 max_wait_s: float = 0.005, max_queue: int = 1024):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.run_batch, self.max_batch, self.max_wait_s = run_batch, int(max_batch), float(max_wait_s)
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self.batches = 0       # batches run so far
        self.requests = 0      # requests served in them
        self.largest_batch = 0
        self._last_batch = 0
        # Per request, from submit to its result: the time spent in the queue and the decoder.
        self.latency = LatencyHistogram()
        self._thread = threading.Thread(target=self._work, name="sidrec-batcher", daemon=True)
        self._thread.start()

    def submit(self, request) -> Future:
        """A future of `request`'s result; QueueFull when the queue is full."""
        future: Future = Future()
        try:
            self._queue.put_nowait((request, future, time.perf_counter()))
        except queue.Full:
            raise QueueFull(f"{self._queue.maxsize} requests already waiting") from None
        return future

    async def __call__(self, request):
        """Await one request's result from an event loop without blocking it."""
        return await asyncio.wrap_future(self.submit(request))

    def stats(self) -> dict:
        return {"max_batch": self.max_batch, "max_wait_ms": self.max_wait_s * 1000,
                "batches": self.batches, "requests": self.requests, "largest_batch": self.largest_batch,
                "mean_batch": self.requests / self.batches if self.batches else None,
                "latency_counts": self.latency.counts()}

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _gather(self) -> list:
        try:
            first = self._queue.get(timeout=0.1)  # wake up now and then to see _stop
        except queue.Empty:
            return []
        batch = [first]
        alone = self._last_batch <= 1 and self._queue.empty()
        deadline = time.monotonic() + (0.0 if alone else self.max_wait_s)
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _work(self) -> None:
        while not self._stop.is_set():
            batch = self._gather()
            # A client that went away cancelled its future: do not decode for it.
            batch = [(r, f, t) for r, f, t in batch if f.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                results = self.run_batch([r for r, _, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} requests")
            except Exception as error:  # every waiting request hears of it; the worker lives on
                for _, future, _ in batch:
                    future.set_exception(error)
                continue
            finally:
                self.batches += 1
                self.requests += len(batch)
                self.largest_batch = max(self.largest_batch, len(batch))
                self._last_batch = len(batch)
            done = time.perf_counter()
            for (_, future, submitted), result in zip(batch, results):
                self.latency.add(done - submitted)
                future.set_result(result)
