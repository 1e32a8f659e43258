"""A small closed-loop HTTP load generator: N clients, keep-alive, for a fixed time."""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class LoadFigures:
    clients: int
    seconds: float
    requests: int
    errors: int
    per_s: float
    p50_ms: float
    p99_ms: float


def run(url: str, body: bytes | None, clients: int, seconds: float) -> LoadFigures:
    """Each client sends the same request again as soon as it has its answer."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = time.perf_counter() + seconds
    headers = {"Content-Type": "application/json"} if body else {}

    def client(n: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        while time.perf_counter() < stop:
            began = time.perf_counter()
            try:
                conn.request("POST" if body else "GET", path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status >= 400:
                    errors[n] += 1
            except (OSError, http.client.HTTPException):
                errors[n] += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                continue
            latencies[n].append(time.perf_counter() - began)
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    every = sorted(x for per in latencies for x in per)
    count = len(every)
    return LoadFigures(
        clients=clients,
        seconds=round(elapsed, 2),
        requests=count,
        errors=sum(errors),
        per_s=round(count / elapsed, 1),
        p50_ms=round(statistics.median(every) * 1000, 2) if every else 0.0,
        p99_ms=round(every[max(0, int(count * 0.99) - 1)] * 1000, 2) if every else 0.0,
    )
