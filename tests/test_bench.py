"""`make bench` works: its quick version runs the real stack and writes its figures.

Nothing here checks a speed; the benchmark prints figures beside baselines for people to read.
"""

from __future__ import annotations

import json
import subprocess

from tests.procs import PYTHON, ROOT


def test_quick_benchmark_runs_and_writes_its_table(tmp_path):
    run = subprocess.run(
        [PYTHON, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "stream, 1 worker(s)" in run.stdout and "in-process" in run.stdout
    report = json.loads((tmp_path / "bench-quick.json").read_text())
    assert [s["workers"] for s in report["stream"]] == [1, 2]
    for figures in report["stream"]:
        assert figures["records"] == 5000 and figures["latency_samples"] > 0
        assert figures["records_per_s"] > 0 and figures["inprocess_per_s"] > 0
    batch = report["batch"]
    assert batch["rows"] == 20_000 and batch["pandas_rows_per_s"] > 0
    assert batch["service_rows_per_s_1_workers"] > 0 and batch["peak_rss_mb_2_workers"]
    single = report["single"]
    assert [f["clients"] for f in single["service_predict"]] == [1, 8, 32]
    assert all(f["requests"] > 0 for f in single["service_predict"] + single["baseline_predict"])
    assert single["generator_ceiling"]["per_s"] > 0
    for line in ("batch 20,000 rows", "/predict, 32 clients", "load generator ceiling"):
        assert line in run.stdout
