"""Stream benchmark: records/s through the stream worker, and append-to-result latency.

Starts its own Redis and stream worker(s), so it measures the real path: a plain Redis client
appends to the input stream, the worker scores, results are read off the output stream. The
baseline, measured in the same run, is the same parsing and scoring done in-process (no Redis).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from dataclasses import dataclass

import numpy as np
import redis

from bench.stack import Stack
from core.features import parse_row
from core.registry import load

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


@dataclass
class StreamFigures:
    records: int
    seconds: float
    records_per_s: float
    inprocess_per_s: float
    paced_rate: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    latency_samples: int
    workers: int


def inprocess_rate(registry: str, n: int, batch: int) -> float:
    """Records/s of the worker's own work without Redis: parse JSON features, score in batches."""
    model, manifest = load(registry, "iris")
    payloads = [json.dumps(ROWS[i % 3]).encode() for i in range(n)]
    start = time.perf_counter()
    for at in range(0, n, batch):
        rows = [
            parse_row(json.loads(p), manifest.feature_names, "f") for p in payloads[at : at + batch]
        ]
        model.predict_proba(np.asarray(rows))
    return n / (time.perf_counter() - start)


def _reader(
    r: redis.Redis, stream: str, expect: int, seen: dict[str, float], stop: threading.Event
):
    newest = r.xrevrange(stream, count=1)
    cursor = newest[0][0] if newest else "0-0"  # only what comes after now
    while len(seen) < expect and not stop.is_set():
        for _, entries in r.xread({stream: cursor}, count=10_000, block=100) or []:
            now = time.perf_counter()
            for entry_id, fields in entries:
                cursor = entry_id
                seen[fields[b"id"].decode()] = now


def throughput(stack: Stack, n: int, chunk: int = 1000) -> tuple[float, float]:
    """Append ``n`` records as fast as one producer can; seconds until the last answer."""
    r = stack.redis_client()
    s = stack.settings
    seen: dict[str, float] = {}
    stop = threading.Event()
    reader = threading.Thread(
        target=_reader, args=(stack.redis_client(), s.stream_output, n, seen, stop)
    )
    reader.start()
    time.sleep(0.2)
    start = time.perf_counter()
    for at in range(0, n, chunk):
        pipe = r.pipeline(transaction=False)
        for i in range(at, min(n, at + chunk)):
            pipe.xadd(s.stream_input, {"id": f"t{i}", "features": json.dumps(ROWS[i % 3])})
        pipe.execute()
    reader.join(timeout=600)
    stop.set()
    if len(seen) < n:
        raise RuntimeError(f"only {len(seen)} of {n} records answered")
    return n / (max(seen.values()) - start), max(seen.values()) - start


def latency(stack: Stack, rate: float, seconds: float, batch: int = 20) -> list[float]:
    """Append at ``rate`` records/s for ``seconds``; each record's append-to-result time, ms."""
    r = stack.redis_client()
    s = stack.settings
    n = int(rate * seconds)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = threading.Event()
    reader = threading.Thread(
        target=_reader, args=(stack.redis_client(), s.stream_output, n, seen, stop)
    )
    reader.start()
    time.sleep(0.2)  # let the reader take its position at the end of the output
    start = time.perf_counter()
    for at in range(0, n, batch):
        due = start + at / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        pipe = r.pipeline(transaction=False)
        ids = [f"l{i}" for i in range(at, min(n, at + batch))]
        for i, record_id in enumerate(ids):
            pipe.xadd(s.stream_input, {"id": record_id, "features": json.dumps(ROWS[i % 3])})
        now = time.perf_counter()
        pipe.execute()
        for record_id in ids:
            sent[record_id] = now
    reader.join(timeout=120)
    stop.set()
    return [(seen[k] - sent[k]) * 1000 for k in sent if k in seen]


def run(stack: Stack, records: int, paced_seconds: float) -> StreamFigures:
    rate, seconds = throughput(stack, records)
    paced = rate / 2
    lat = sorted(latency(stack, paced, paced_seconds))
    base = inprocess_rate(
        stack.settings.model_registry, min(records, 200_000), stack.settings.stream_batch
    )
    return StreamFigures(
        records=records,
        seconds=round(seconds, 3),
        records_per_s=round(rate),
        inprocess_per_s=round(base),
        paced_rate=round(paced),
        latency_p50_ms=round(statistics.median(lat), 2),
        latency_p99_ms=round(lat[int(len(lat) * 0.99) - 1], 2),
        latency_max_ms=round(lat[-1], 2),
        latency_samples=len(lat),
        workers=stack.stream_workers,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with Stack(stream_workers=args.workers) as stack:
        figures = run(stack, args.records, args.paced_seconds)
    print(json.dumps(figures.__dict__, indent=2))


if __name__ == "__main__":
    main()
