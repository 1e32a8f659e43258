"""Batch: a generated CSV with an id column, end to end through HTTP (upload, job, polling,
download of the full result), against the same scoring done in-process with pandas and with
pyarrow; and the peak memory of the API and worker processes meanwhile."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import psutil

from bench.stack import Stack
from core import registry

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def make_file(path: Path, rows: int) -> None:
    rng = np.random.default_rng(7)
    values = rng.uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], size=(rows, 4)).round(1)
    with open(path, "w") as fh:
        fh.write("id," + ",".join(FEATURES) + "\n")
        for start in range(0, rows, 100_000):
            block = values[start : start + 100_000]
            fh.writelines(
                f"id{start + i},{a},{b},{c},{d}\n" for i, (a, b, c, d) in enumerate(block.tolist())
            )


def pandas_rate(path: Path, model, classes: list[str], out: Path) -> float:
    import pandas as pd

    began = time.perf_counter()
    frame = pd.read_csv(path)
    probabilities = model.predict_proba(frame[FEATURES].to_numpy())
    frame["prediction"] = np.asarray(classes)[probabilities.argmax(axis=1)]
    for i, c in enumerate(classes):
        frame[f"proba_{c}"] = probabilities[:, i]
    frame.to_csv(out, index=False)
    return len(frame) / (time.perf_counter() - began)


def pyarrow_rate(path: Path, model, classes: list[str], out: Path) -> float:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    began = time.perf_counter()
    table = pacsv.read_csv(path)
    features = np.column_stack([table[f].to_numpy() for f in FEATURES])
    probabilities = model.predict_proba(features)
    table = table.append_column(
        "prediction", pa.array(np.asarray(classes)[probabilities.argmax(1)])
    )
    for i, c in enumerate(classes):
        table = table.append_column(f"proba_{c}", pa.array(probabilities[:, i]))
    pacsv.write_csv(table, out)
    return table.num_rows / (time.perf_counter() - began)


class PeakRss:
    """Samples the peak RSS of process trees while a block runs."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            for name, pid in self.roots.items():
                try:
                    root = psutil.Process(pid)
                    for p in [root, *root.children(recursive=True)]:
                        key = f"{name}:{'main' if p.pid == pid else p.pid}"
                        self.peaks[key] = max(self.peaks.get(key, 0), p.memory_info().rss)
                except psutil.Error:
                    pass

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def service_rate(stack: Stack, path: Path, out: Path) -> float:
    parts = urlsplit(stack.url)
    began = time.perf_counter()
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    with open(path, "rb") as fh:
        headers = {"Content-Type": "text/csv", "Content-Length": str(path.stat().st_size)}
        conn.request("POST", "/v1/jobs", body=fh, headers=headers)
        job = json.loads(conn.getresponse().read())
    while True:
        conn.request("GET", job["status_url"])
        status = json.loads(conn.getresponse().read())
        if status["status"] != "queued" and status["status"] != "running":
            break
        time.sleep(0.1)
    if status["status"] != "succeeded":
        raise RuntimeError(f"benchmark job ended {status['status']}: {status}")
    conn.request("GET", status["result_url"])
    response = conn.getresponse()
    with open(out, "wb") as fh:
        while block := response.read(1 << 20):
            fh.write(block)
    conn.close()
    return status["progress"]["rows_total"] / (time.perf_counter() - began)


def run(rows: int, workdir: Path) -> dict:
    source = workdir / "batch.csv"
    make_file(source, rows)
    figures: dict = {"rows": rows, "bytes": source.stat().st_size}
    for processes in (1, 2):
        with Stack(celery_processes=processes, api=True) as stack:
            if processes == 1:
                model, manifest = registry.load(stack.settings.model_registry, "iris")
                figures["pandas_rows_per_s"] = round(
                    pandas_rate(source, model, manifest.class_names, workdir / "pandas.csv")
                )
                figures["pyarrow_rows_per_s"] = round(
                    pyarrow_rate(source, model, manifest.class_names, workdir / "pyarrow.csv")
                )
            roots = {"api": stack.api_proc.pid, "worker": stack.procs[0].pid}
            with PeakRss(roots) as rss:
                rate = service_rate(stack, source, workdir / "service.csv")
            figures[f"service_rows_per_s_{processes}_workers"] = round(rate)
            figures[f"peak_rss_mb_{processes}_workers"] = {
                k: round(v / 2**20, 1) for k, v in sorted(rss.peaks.items())
            }
    return figures
