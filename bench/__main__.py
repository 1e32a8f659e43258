"""`make bench`: start the service on a private Redis, measure it, print one table, save JSON.

BENCH_QUICK=1 (or --quick) runs a small version, which the test suite uses to prove it works;
its figures mean nothing. Nothing here is asserted: figures are printed beside their baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import batch_bench, single_bench, stream_bench
from bench.stack import Stack

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1"
    )
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    records, paced = (5_000, 1.0) if args.quick else (300_000, 15.0)
    batch_rows, seconds = (20_000, 1.0) if args.quick else (1_000_000, 10.0)
    started = time.time()
    rows = []
    report: dict = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "quick": args.quick,
                    "machine": machine(), "stream": []}  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="iq-bench-") as workdir:
        batch = batch_bench.run(batch_rows, Path(workdir))
    report["batch"] = batch
    for n in (1, 2):
        rate = batch[f"service_rows_per_s_{n}_workers"]
        rows.append((
            f"batch {batch_rows:,} rows, {n} worker proc", f"{rate:,} rows/s",
            f"pandas {batch['pandas_rows_per_s']:,} / pyarrow {batch['pyarrow_rows_per_s']:,}",
            f"{rate / batch['pandas_rows_per_s']:.2f}x"
            f" / {rate / batch['pyarrow_rows_per_s']:.2f}x",
            "peak RSS MB "
            + ", ".join(f"{k} {v}" for k, v in batch[f"peak_rss_mb_{n}_workers"].items()),
        ))  # fmt: skip

    single = single_bench.run(seconds)
    report["single"] = single
    for name, label in (("service_predict", "/predict"), ("service_v1_wait", "/v1/predict?wait")):
        for mine, base in zip(single[name], single["baseline_predict"], strict=True):
            rows.append((
                f"{label}, {mine['clients']} clients", f"{mine['per_s']:,} req/s",
                f"baseline Flask {base['per_s']:,} req/s", f"{mine['per_s'] / base['per_s']:.2f}x",
                f"p50 {mine['p50_ms']} ms, p99 {mine['p99_ms']} ms, {mine['errors']} errors "
                f"(baseline p99 {base['p99_ms']} ms)",
            ))  # fmt: skip
    ceiling = single["generator_ceiling"]
    rows.append(("load generator ceiling", f"{ceiling['per_s']:,} req/s", "GET /health, 32 clients",
                 "", f"p99 {ceiling['p99_ms']} ms"))  # fmt: skip

    for workers in (1, 2):
        with Stack(stream_workers=workers) as stack:
            figures = stream_bench.run(stack, records, paced)
        report["stream"].append(figures.__dict__)
        rows.append((
            f"stream, {workers} worker(s)", f"{figures.records_per_s:,} rec/s",
            f"in-process {figures.inprocess_per_s:,} rec/s",
            f"{figures.records_per_s / figures.inprocess_per_s:.2f}x",
            f"p50 {figures.latency_p50_ms} ms, p99 {figures.latency_p99_ms} ms "
            f"at {figures.paced_rate:,} rec/s; producer ceiling "
            f"{figures.producer_ceiling_per_s:,} rec/s",
        ))  # fmt: skip

    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    print(f"\nbenchmark ({'quick' if args.quick else 'full'}), {report['machine']['cpus']} cpus")
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "quick" if args.quick else datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out / f"bench-{name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {path} in {time.time() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
