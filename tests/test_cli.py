"""The qinfer command, driven as a person would, against the API under gunicorn."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import urllib.request
from pathlib import Path

import pytest

from core.embedded_redis import free_port
from tests import procs

QINFER = str(Path(procs.PYTHON).parent / "qinfer")
CSV = (
    "id,sepal_length,sepal_width,petal_length,petal_width\n"
    + "".join(f"a{i},5.1,3.5,1.4,0.2\n" for i in range(300))
    + "bad,5.1,oops,1.4,0.2\n"
    + "".join(f"b{i},6.7,3.0,5.2,2.3\n" for i in range(300))
)


def qinfer(api_url: str, *args: str, stdin: str = "", env: dict | None = None):
    return subprocess.run(
        [QINFER, "--url", api_url, *args],
        input=stdin, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def test_submit_waits_and_writes_the_same_result_as_the_api(api_url, tmp_path):
    source = tmp_path / "flowers.csv"
    source.write_text(CSV)
    run = qinfer(api_url, "submit", str(source))
    assert run.returncode == 0, run.stderr
    job_id = run.stderr.split()[1]
    assert "succeeded: 600 rows scored, 1 not scored" in run.stderr
    result = (tmp_path / "flowers.scored.csv").read_bytes()
    assert result == fetch(f"{api_url}/v1/jobs/{job_id}/result")
    assert len(result.splitlines()) == 601
    errors = (tmp_path / "flowers.errors.csv").read_text()
    assert errors.splitlines() == ["row,error", "301,sepal_width 'oops' is not a number"]
    assert "rows" in run.stderr and "[" in run.stderr  # the progress line

    status = qinfer(api_url, "status", job_id)
    assert json.loads(status.stdout)["status"] == "succeeded"
    again = tmp_path / "again.csv"
    assert qinfer(api_url, "result", job_id, "-o", str(again)).returncode == 0
    assert again.read_bytes() == result
    refused = qinfer(api_url, "cancel", job_id)
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"qinfer: 409: job {job_id} already succeeded"


def test_no_wait_prints_the_id_and_the_result_is_fetched_later(api_url, tmp_path):
    source = tmp_path / "few.csv"
    source.write_text("5.1,3.5,1.4,0.2\n")
    run = qinfer(api_url, "submit", "--no-wait", str(source))
    job_id = run.stdout.strip()
    assert run.returncode == 0 and len(job_id) == 36
    out = tmp_path / "out.csv"
    for _ in range(100):
        if qinfer(api_url, "result", job_id, "-o", str(out)).returncode == 0:
            break
    assert out.read_text().splitlines()[1].split(",")[4] == "setosa"


def test_predict_one_row(api_url):
    run = qinfer(api_url, "predict", "6.7", "3.0", "5.2", "2.3")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["prediction"] == "virginica"
    named = json.dumps({"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4,
                        "petal_width": 0.2})  # fmt: skip
    assert json.loads(qinfer(api_url, "predict", "--json", named).stdout)["class_id"] == 0
    bad = qinfer(api_url, "predict", "1", "2")
    assert bad.returncode == 1
    assert bad.stderr.startswith("qinfer: 422: features has 2 values")


def test_unreachable_server_is_one_line_and_non_zero(tmp_path):
    source = tmp_path / "x.csv"
    source.write_text("5.1,3.5,1.4,0.2\n")
    for args in (["submit", str(source)], ["status", "x"], ["predict", "1", "2", "3", "4"]):
        run = qinfer(f"http://127.0.0.1:{free_port()}", *args)
        assert run.returncode == 2
        assert run.stderr.startswith("qinfer: cannot reach the API at http://127.0.0.1:")
        assert len(run.stderr.strip().splitlines()) == 1


def test_a_failed_job_exits_non_zero(api_url, tmp_path):
    source = tmp_path / "missing.csv"
    source.write_text("id,petal_width\n1,2\n")
    run = qinfer(api_url, "submit", str(source))
    assert run.returncode == 1
    assert run.stderr.startswith("qinfer: 422: the header row has no column for sepal_length")


@pytest.fixture()
def stream_worker(settings):
    mine = dataclasses.replace(settings, stream_input=f"{settings.key_prefix}:cli:in",
                               stream_output=f"{settings.key_prefix}:cli:out")  # fmt: skip
    proc = procs.start_stream_worker(mine)
    yield mine
    procs.stop(proc)


def test_stream_pipes_json_lines_through_redis(api_url, stream_worker):
    s = stream_worker
    env = {**s.env(), "PATH": "/usr/bin:/bin"}
    lines = [json.dumps({"id": f"s{i}", "features": [5.1, 3.5, 1.4, 0.2]}) for i in range(2500)]
    lines += ["[6.7, 3.0, 5.2, 2.3]", json.dumps({"id": "bad", "features": [1, "x", 3, 4]})]
    run = qinfer(api_url, "stream", stdin="\n".join(lines) + "\n", env=env)
    assert run.returncode == 0, run.stderr
    answers = [json.loads(line) for line in run.stdout.splitlines()]
    by_id = {a["id"]: a for a in answers}
    assert len(answers) == len(by_id) == 2502
    assert by_id["s7"]["result"]["prediction"] == "setosa"
    assert by_id["2501"]["result"]["prediction"] == "virginica"  # a bare array: its line number
    assert "not a number" in by_id["bad"]["error"]


def test_stream_with_no_worker_gives_up_with_a_message(settings):
    env = {**settings.env(), "STREAM_INPUT": "nobody:reads", "STREAM_OUTPUT": "nobody:writes"}
    env["PATH"] = "/usr/bin:/bin"
    run = qinfer("http://127.0.0.1:1", "stream", "--timeout", "1", stdin="[1, 2, 3, 4]\n", env=env)
    assert run.returncode == 1
    assert "1 records got no answer within 1s" in run.stderr
