"""Nothing lost: each fault provoked for real, against real Redis and worker processes.

Every test that loses a process checks the promise with an id column: every input row ends in
the result or the errors exactly once. Each wait is bounded in time.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import signal
import time
from collections import Counter
from itertools import count

import psutil

from api import create_app
from core.embedded_redis import EmbeddedRedis
from core.lane import PredictLane
from core.queue import batch_queue
from tests import procs
from tests.conftest import wait_for_job

HEADER = b"id,sepal_length,sepal_width,petal_length,petal_width\n"
_n = count()


def isolated(settings, **changes):
    """Settings with keys and queues of their own, so other tests' workers stay out."""
    return dataclasses.replace(settings, key_prefix=f"{settings.key_prefix}f{next(_n)}", **changes)


def make_csv(rows: int, bad_every: int = 0) -> bytes:
    lines = [HEADER]
    for i in range(rows):
        bad = bad_every and i % bad_every == 0
        lines.append(b"r%d,%s,3.5,1.4,0.2\n" % (i, b"oops" if bad else b"5.1"))
    return b"".join(lines)


def check_every_row_once(client, job: dict, rows: int) -> tuple[int, int]:
    """Every input row is in the result or the errors, once: (scored, failed)."""
    result_response = client.get(job["result_url"])
    assert result_response.status_code == 200, result_response.get_json()
    result = result_response.get_data(as_text=True)
    errors = client.get(job["errors_url"]).get_data(as_text=True)
    scored = [r["id"] for r in csv.DictReader(io.StringIO(result))]
    failed = [int(r["row"]) for r in csv.DictReader(io.StringIO(errors))]
    seen = Counter(int(i[1:]) + 1 for i in scored) + Counter(failed)  # as 1-based row numbers
    assert set(seen) == set(range(1, rows + 1)), "rows missing"
    assert max(seen.values()) == 1, "rows answered twice"
    assert job["progress"]["rows_done"] == len(scored)
    assert job["progress"]["rows_failed"] == len(failed)
    return len(scored), len(failed)


def submit(client, body: bytes) -> str:
    response = client.post("/v1/jobs", data=body, content_type="text/csv")
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job_id"]


def wait_progress(client, job_id: str, fraction: float, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").get_json()
        p = job["progress"]
        if (p["rows_done"] + p["rows_failed"]) >= fraction * p["rows_total"] or job["status"] in (
            "succeeded", "failed", "cancelled",
        ):  # fmt: skip
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.01)


def redelivered(store, job_id: str) -> int:
    tries = store.r.hgetall(store.key(job_id, "tries"))
    return sum(1 for v in tries.values() if int(v) > 1)


def pool_children(worker) -> list[psutil.Process]:
    return psutil.Process(worker.pid).children()


def test_killed_pool_process_loses_no_rows(settings):
    # 100 short chunks, a kill every 0.15 s from 20 %: a chunk takes milliseconds here, so with
    # fewer chunks or slower kills every kill could land between chunks.
    s = isolated(settings, chunk_rows=2000)
    worker = procs.start_worker(s, concurrency=2)
    try:
        app = create_app({"SETTINGS": s})
        client, store = app.test_client(), app.extensions["inference"].jobs
        hit = 0
        for attempt in range(1, 4):  # bounded: until a kill lands on a chunk being scored
            job_id = submit(client, make_csv(200_000, bad_every=997))
            wait_progress(client, job_id, 0.2)
            for _ in range(40):
                if (
                    redelivered(store, job_id)
                    or client.get(f"/v1/jobs/{job_id}").get_json()["status"] != "running"
                ):
                    break
                os.kill(pool_children(worker)[0].pid, signal.SIGKILL)
                time.sleep(0.15)
            job = wait_for_job(client, job_id, timeout=120)
            assert job["status"] == "succeeded"
            scored, failed = check_every_row_once(client, job, 200_000)
            assert failed == len(range(0, 200_000, 997))
            hit += redelivered(store, job_id)
            if hit:
                print(f"{hit} chunk(s) redelivered in job {attempt}")
                break
        assert hit >= 1, "no kill landed on a running chunk"
    finally:
        procs.stop(worker)


def test_killed_worker_is_replaced_and_the_job_completes(settings):
    # Short visibility timeout and sweep, so a dead worker's tasks come back within seconds.
    s = isolated(settings, chunk_rows=1000, visibility_timeout_seconds=3,
                 restore_interval_seconds=1, task_time_limit_seconds=2)  # fmt: skip
    first = procs.start_worker(s, concurrency=2)
    app = create_app({"SETTINGS": s})
    client = app.test_client()
    try:
        job_id = submit(client, make_csv(100_000))
        wait_progress(client, job_id, 0.3)
        os.killpg(first.pid, signal.SIGKILL)  # the whole worker: main process and pool
        first.wait(10)
        at_kill = client.get(f"/v1/jobs/{job_id}").get_json()
        assert at_kill["status"] == "running"
        second = procs.start_worker(s, concurrency=2)
        try:
            job = wait_for_job(client, job_id, timeout=120)
        finally:
            procs.stop(second)
    finally:
        procs.stop(first, signal.SIGKILL)
    assert job["status"] == "succeeded", job
    check_every_row_once(client, job, 100_000)


def test_a_chunk_that_kills_its_worker_every_time_fails_its_rows(settings):
    """Chunk 1 holds a few 1 MB rows; each time a pool process starts it, the test kills that
    process (as an out-of-memory killer would) until the delivery cap fails its rows."""
    s = isolated(settings, chunk_rows=40, chunk_bytes=2**26, max_row_bytes=2 * 2**20)
    worker = procs.start_worker(s, concurrency=1)
    try:
        app = create_app({"SETTINGS": s})
        client, store = app.test_client(), app.extensions["inference"].jobs
        big = b"x" * 2**20
        body = HEADER.replace(b"id,", b"id,note,") + b"".join(
            b"r%d,%s,5.1,3.5,1.4,0.2\n" % (i, big if 40 <= i < 70 else b"-") for i in range(120)
        )
        job_id = submit(client, body)
        tries_key, done_key = store.key(job_id, "tries"), store.key(job_id, "done")
        killed = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            tries = int(store.r.hget(tries_key, "1") or 0)
            if store.r.sismember(done_key, "1"):
                break
            if tries > killed and tries <= s.max_deliveries:
                os.kill(pool_children(worker)[0].pid, signal.SIGKILL)
                killed += 1
            time.sleep(0.002)
        job = wait_for_job(client, job_id, timeout=60)
    finally:
        procs.stop(worker)
    assert killed == s.max_deliveries
    assert job["status"] == "failed"
    assert "delivered 3 times" in job["error"]
    errors = list(csv.DictReader(io.StringIO(client.get(job["errors_url"]).get_data(as_text=True))))
    assert [int(e["row"]) for e in errors] == list(range(41, 81))
    assert all("delivered 3 times and never finished" in e["error"] for e in errors)
    assert job["progress"] == {"rows_total": 120, "rows_done": 80, "rows_failed": 40}


def _timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_redis_restart_while_jobs_run(settings, tmp_path):
    server = EmbeddedRedis(data_dir=str(tmp_path)).start()  # AOF on
    # A task cut off by the restart comes back after the visibility timeout: short here.
    s = isolated(settings, redis_url=server.url, chunk_rows=500, redis_timeout=1.0,
                 visibility_timeout_seconds=5, restore_interval_seconds=1,
                 task_time_limit_seconds=4)  # fmt: skip
    # Supervised as compose's restart policy would: Celery's worker usually reconnects by
    # itself, but it can also exit on an error inside kombu while the connection drops.
    worker = procs.Supervised(lambda: procs.start_worker(s, concurrency=2))
    streamer = procs.Supervised(lambda: procs.start_stream_worker(s))
    try:
        app = create_app({"SETTINGS": s})
        client = app.test_client()
        jobs = [submit(client, make_csv(20_000)) for _ in range(4)]
        wait_progress(client, jobs[0], 0.2)
        server.stop()  # Redis goes away mid-run (SIGTERM: it writes its AOF and exits)
        outage = []
        for call in (
            lambda: client.get(f"/v1/jobs/{jobs[0]}"),
            lambda: client.post("/v1/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}),
            lambda: client.post("/v1/jobs", data=make_csv(10), content_type="text/csv"),
            lambda: client.get("/readyz"),
        ):
            response, seconds = _timed(call)
            outage.append((response.status_code, seconds))
            assert response.status_code == 503
            assert "job_id" not in response.get_json()
            assert seconds < 10, "a hang guard, not a speed claim"
        server.start()  # the same port and data directory
        jobs.append(submit(client, make_csv(10)))  # the request refused in the outage now works
        jobs += [submit(client, make_csv(5_000)) for _ in range(2)]
        try:
            finished = [wait_for_job(client, j, timeout=60) for j in jobs]
        except AssertionError as exc:
            lines = procs.log_of(worker.proc, tail=100_000).splitlines()
            raise AssertionError(
                f"{exc}\n" + "\n".join(x for x in lines if "WARN" in x or "ERR" in x)[-6000:]
            ) from None
        assert [j["status"] for j in finished] == ["succeeded"] * len(jobs)
        for job in finished:
            check_every_row_once(client, job, job["progress"]["rows_total"])
        # The stream worker reconnected too.
        r = app.extensions["inference"].redis
        r.xadd(s.stream_input, {"id": "after-restart", "features": "[5.1, 3.5, 1.4, 0.2]"})
        got = r.xread({s.stream_output: "0-0"}, count=1, block=30_000)
        assert got and got[0][1][0][1][b"id"] == b"after-restart"
    finally:
        worker.stop()
        streamer.stop()
        server.cleanup()
    print(f"outage answers (status, seconds): {outage}; worker restarts: {worker.restarts}")
    for code, log in worker.exits:
        print(f"worker exited with {code}: ...{log[-600:]}")


def test_cancel_while_chunks_run(settings):
    s = isolated(settings, chunk_rows=200)
    worker = procs.start_worker(s, concurrency=2)
    try:
        client = create_app({"SETTINGS": s}).test_client()
        job_id = submit(client, make_csv(60_000))  # 300 chunks
        wait_progress(client, job_id, 0.2)
        cancelled = client.delete(f"/v1/jobs/{job_id}").get_json()
        assert cancelled["status"] == "cancelled"
        at_cancel = cancelled["progress"]["rows_done"]
        time.sleep(2)  # the queued chunks are delivered and skipped
        job = client.get(f"/v1/jobs/{job_id}").get_json()
    finally:
        procs.stop(worker)
    assert job["status"] == "cancelled"
    done = job["progress"]["rows_done"]
    # Only chunks already running when the cancel landed may finish: one per pool process.
    assert at_cancel <= done <= at_cancel + 2 * 200
    assert done < 60_000
    result = client.get(job["result_url"])
    assert result.status_code == 200
    assert len(result.get_data(as_text=True).splitlines()) == done + 1  # scored rows stay


def test_expired_jobs_answer_404_and_leave_no_keys(settings):
    s = isolated(settings, job_ttl_seconds=2)
    worker = procs.start_worker(s, concurrency=2)
    try:
        client = create_app({"SETTINGS": s}).test_client()
        r = client.application.extensions["inference"].redis
        pattern = f"{s.key_prefix}:job:*"
        before = len(list(r.scan_iter(pattern)))
        ids = []
        for i in range(100):
            if i % 10 == 0:
                ids.append(submit(client, make_csv(50, bad_every=7)))
            else:
                body = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
                ids.append(client.post("/v1/predict?wait=5", json=body).get_json()["job_id"])
        for job_id in ids:
            wait_for_job(client, job_id)
        during = len(list(r.scan_iter(pattern)))
        deadline = time.monotonic() + 20
        while list(r.scan_iter(pattern)) and time.monotonic() < deadline:
            time.sleep(0.2)
        after = len(list(r.scan_iter(pattern)))
        statuses = {client.get(f"/v1/jobs/{j}").status_code for j in ids}
    finally:
        procs.stop(worker)
    assert before == 0 and during >= 100 and after == 0
    assert statuses == {404}


def test_a_lost_task_message_is_sent_again(settings):
    """kombu can lose a message popped just as Redis goes away; the sweeper finds the stalled
    job and sends its missing chunks again."""
    s = isolated(settings, chunk_rows=100, visibility_timeout_seconds=2,
                 restore_interval_seconds=1, task_time_limit_seconds=2)  # fmt: skip
    procs.stop(procs.start_worker(s, concurrency=1))  # publishes the model manifest, then goes
    app = create_app({"SETTINGS": s})
    client, r = app.test_client(), app.extensions["inference"].redis
    job_id = submit(client, make_csv(1000))  # no worker: its ten messages wait in the queue
    queue = batch_queue(s)
    assert r.llen(queue) == 10
    r.delete(queue)  # ... and are lost
    worker = procs.start_worker(s, concurrency=2)
    try:
        job = wait_for_job(client, job_id, timeout=60)
        assert job["status"] == "succeeded"
        check_every_row_once(client, job, 1000)
    finally:
        procs.stop(worker)


def test_predictions_taken_by_a_worker_that_died_are_put_back_on_the_lane(settings):
    """A worker process that dies holding a batch of predictions leaves their jobs unfinished
    and off the lane; the sweeper puts them back and a live worker scores them."""
    s = isolated(settings, visibility_timeout_seconds=2, restore_interval_seconds=1,
                 task_time_limit_seconds=2)  # fmt: skip
    procs.stop(procs.start_worker(s, concurrency=1))  # publishes the model manifest, then goes
    app = create_app({"SETTINGS": s})
    client, r = app.test_client(), app.extensions["inference"].redis
    body = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    ids = [client.post("/v1/predict", json=body).get_json()["job_id"] for _ in range(5)]
    lane = PredictLane(s).key
    assert r.lrange(lane, 0, -1) == [i.encode() for i in ids]
    assert r.delete(lane) == 1  # taken, as by a worker that then died
    worker = procs.start_worker(s, concurrency=2)
    try:
        jobs = [wait_for_job(client, job_id, timeout=60) for job_id in ids]
    finally:
        procs.stop(worker)
    assert {job["status"] for job in jobs} == {"succeeded"}
    for job_id in ids:
        answer = client.get(f"/v1/jobs/{job_id}/result").get_json()["predictions"]
        assert [a["prediction"] for a in answer] == ["setosa"]
