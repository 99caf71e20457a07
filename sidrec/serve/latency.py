"""Request latencies as counts in fixed log-spaced buckets, so that a load test can read
the server's own percentiles over any window: the difference of two snapshots' counts.

Where a request's time goes under load (in the batcher's queue and the decoder, in the
handler around them, or outside the server: HTTP parsing, the event loop, the client)
is what these tell apart, next to the latency the client measures
(bench/serve_load.py).

    histogram = LatencyHistogram()
    histogram.add(0.012)                                   # seconds
    before = histogram.counts(); ...; after = histogram.counts()
    percentile_ms([a - b for a, b in zip(after, before)], 99)
"""
from __future__ import annotations

import bisect
import itertools
import threading

# Bucket i holds latencies in (EDGES_MS[i-1], EDGES_MS[i]]; the last one everything above
# its lower edge. Ratio 1.1 between edges: a percentile is read to within 10 %.
_RATIO = 1.1
EDGES_MS: tuple[float, ...] = tuple(0.05 * _RATIO ** i for i in range(160))   # 0.05 ms .. ~200 s


class LatencyHistogram:
    """Thread-safe counts of latencies (the batcher's worker thread and the event loop
    both add)."""

    def __init__(self):
        self._counts = [0] * (len(EDGES_MS) + 1)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        index = bisect.bisect_left(EDGES_MS, seconds * 1000.0)
        with self._lock:
            self._counts[index] += 1

    def counts(self) -> list[int]:
        """A snapshot of the counts (bucket i: up to EDGES_MS[i]; the last: above)."""
        with self._lock:
            return list(self._counts)


def percentile_ms(counts: list[int], q: float) -> float | None:
    """The q-th percentile (0 < q <= 100) of the latencies counted, in ms: the upper edge
    of the bucket where the count reaches q % (so an upper bound within 10 %); None when
    nothing was counted. A latency above the last edge reads as that edge."""
    if not 0 < q <= 100:
        raise ValueError(f"q must be in (0, 100], got {q}")
    if len(counts) != len(EDGES_MS) + 1:
        raise ValueError(f"expected {len(EDGES_MS) + 1} bucket counts, got {len(counts)}")
    total = sum(counts)
    if total == 0:
        return None
    needed = q / 100.0 * total
    index = next(i for i, seen in enumerate(itertools.accumulate(counts)) if seen >= needed)
    return EDGES_MS[min(index, len(EDGES_MS) - 1)]
