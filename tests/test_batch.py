"""CSV batch jobs end to end: upload, chunks scored in parallel by real workers, downloads."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sklearn.datasets import load_iris

from core.jobs import JobStore
from core.queue import SCORE_CHUNK
from tests.conftest import wait_for_job

HEADER = "id,sepal_length,sepal_width,petal_length,petal_width"


def iris_csv() -> tuple[str, dict[str, str]]:
    """The 150 Iris rows with an id column, shuffled by id, and the true class of each id."""
    data = load_iris()
    lines = [HEADER]
    truth = {}
    for i, (row, target) in enumerate(zip(data.data, data.target, strict=True)):
        row_id = f"iris-{(i * 37) % 150:03d}"
        truth[row_id] = str(data.target_names[target])
        lines.append(",".join([row_id, *map(str, row)]))
    return "\n".join(lines) + "\n", truth


def submit(client, text: str, **kwargs):
    return client.post("/v1/jobs", data=text.encode(), content_type="text/csv", **kwargs)


def read_csv(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith("attachment")
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_iris_batch_with_id_column(client, settings):
    text, truth = iris_csv()
    response = submit(client, text)
    assert response.status_code == 202
    job_id = response.get_json()["job_id"]
    job = wait_for_job(client, job_id)
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"rows_total": 150, "rows_done": 150, "rows_failed": 0}
    assert job["started_at"] and job["finished_at"] and job["model"]["version"]
    rows = read_csv(client.get(job["result_url"]))
    assert list(rows[0]) == [
        "id", "sepal_length", "sepal_width", "petal_length", "petal_width",
        "prediction", "proba_setosa", "proba_versicolor", "proba_virginica",
    ]  # fmt: skip
    ids = [r["id"] for r in rows]
    assert sorted(ids) == sorted(truth)  # every id, once
    assert ids == [line.split(",")[0] for line in text.splitlines()[1:]]  # in input order
    correct = sum(r["prediction"] == truth[r["id"]] for r in rows)
    assert correct / len(rows) >= 0.9
    assert read_csv(client.get(job["errors_url"])) == []
    # 150 rows at settings.chunk_rows per chunk were split and scored as separate tasks
    assert settings.chunk_rows < 150


def test_bad_rows_are_listed_and_the_job_succeeds(client):
    text = (
        "id,sepal_length,sepal_width,petal_length,petal_width\n"
        "a,5.1,3.5,1.4,0.2\n"
        "b,5.1,,1.4,0.2\n"
        "c,NaN,3.5,1.4,0.2\n"
        "d,5.1,3.5,inf,0.2\n"
        "e,5.1,3.5,1.4\n"
        "f,five,3.5,1.4,0.2\n"
        "g,6.7,3.0,5.2,2.3\n"
        "h,1e308,1e308,1e308,1e308\n"
    )
    job = wait_for_job(client, submit(client, text).get_json()["job_id"])
    assert job["status"] == "succeeded"
    assert job["progress"] == {"rows_total": 8, "rows_done": 2, "rows_failed": 6}
    assert [r["id"] for r in read_csv(client.get(job["result_url"]))] == ["a", "g"]
    errors = read_csv(client.get(job["errors_url"]))
    assert [e["row"] for e in errors] == ["2", "3", "4", "5", "6", "8"]
    assert "cannot score this row" in errors[5]["error"]
    assert "sepal_width is missing" in errors[0]["error"]
    assert "NaN" in errors[1]["error"] and "infinite" in errors[2]["error"]
    assert "columns" in errors[3]["error"] and "not a number" in errors[4]["error"]


def test_headerless_crlf_multipart_upload(client):
    text = "5.1,3.5,1.4,0.2\r\n6.7,3.0,5.2,2.3\r\n"
    response = client.post(
        "/v1/jobs", data={"file": (io.BytesIO(text.encode()), "rows.csv")},
        content_type="multipart/form-data",
    )  # fmt: skip
    assert response.status_code == 202
    job = wait_for_job(client, response.get_json()["job_id"])
    rows = read_csv(client.get(job["result_url"]))
    assert [r["prediction"] for r in rows] == ["setosa", "virginica"]
    assert list(rows[0])[:4] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def test_quoted_fields_and_formula_cells_come_back_safe(client):
    text = (
        "note,petal_width,petal_length,sepal_width,sepal_length\n"
        '"line one\nline two, with comma",0.2,1.4,3.5,5.1\n'
        '"=HYPERLINK(""http://x"")",2.3,5.2,3.0,6.7\n'
    )
    job = wait_for_job(client, submit(client, text).get_json()["job_id"])
    rows = read_csv(client.get(job["result_url"]))
    assert rows[0]["note"] == "line one\nline two, with comma"
    assert rows[1]["note"] == '\'=HYPERLINK("http://x")'
    assert [r["prediction"] for r in rows] == ["setosa", "virginica"]


@pytest.mark.parametrize(
    ("text", "status", "needle"),
    [
        ("id,sepal_length,petal_length\n1,2,3\n", 422, "sepal_width"),
        ("id,name\n1,x\n", 422, "petal_width"),
        ("1,5.1,3.5,1.4,0.2\n", 422, "no header row"),
        (HEADER + "\n", 422, "no data rows"),
        ("", 400, "no rows"),
    ],
)
def test_unusable_uploads_are_refused_at_once(client, text, status, needle):
    response = submit(client, text)
    assert response.status_code == status
    assert needle in response.get_json()["error"]["message"]


def test_wrong_content_type_and_missing_file_field(client):
    response = client.post("/v1/jobs", json={"rows": []})
    assert response.status_code == 415
    assert response.get_json()["error"]["field"] == "Content-Type"
    response = client.post("/v1/jobs", data={"other": "x"}, content_type="multipart/form-data")
    assert response.status_code == 415
    assert response.get_json()["error"]["field"] == "file"


def test_upload_over_the_size_limit_is_413(app, settings):
    limit = app.config["MAX_CONTENT_LENGTH"]
    try:
        app.config["MAX_CONTENT_LENGTH"] = 1000
        response = submit(app.test_client(), "5.1,3.5,1.4,0.2\n" * 200)
    finally:
        app.config["MAX_CONTENT_LENGTH"] = limit
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "request_entity_too_large"


def _queued_job(app, text: str, rows: int) -> tuple[JobStore, str]:
    """A job recorded and its input stored, as the API does, but not yet enqueued."""
    store = app.extensions["inference"].jobs
    job_id = store.new_id()
    store.put_inputs(job_id, [(0, text.encode())])
    layout = {"columns": HEADER.split(","), "width": 5}
    store.create(job_id, "batch", "anonymous", rows, 1, json.dumps(layout))
    return store, job_id


def test_output_of_a_queued_job_is_409(app, client):
    _, job_id = _queued_job(app, "a,5.1,3.5,1.4,0.2\n", 1)
    for path in ("result", "errors"):
        response = client.get(f"/v1/jobs/{job_id}/{path}")
        assert response.status_code == 409
        assert response.get_json()["error"]["status"] == "queued"


def test_cancelled_job_starts_no_chunk(app, client):
    store, job_id = _queued_job(app, "a,5.1,3.5,1.4,0.2\n", 1)
    response = client.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 200
    assert response.get_json()["status"] == "cancelled"
    # The task is delivered after the cancel: the worker sees it and scores nothing.
    app.extensions["inference"].send(SCORE_CHUNK, [[job_id, 0, 1, 1]])
    tries = store.key(job_id, "tries")
    _wait_until(lambda: store.r.hget(tries, "0") == b"1")
    job = client.get(f"/v1/jobs/{job_id}").get_json()
    assert job["status"] == "cancelled"
    assert job["progress"]["rows_done"] == 0
    assert client.get(f"/v1/jobs/{job_id}/result").status_code == 200
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 200  # cancelling again is fine


def test_cancel_of_a_finished_job_is_409(client):
    job = wait_for_job(client, submit(client, "5.1,3.5,1.4,0.2\n").get_json()["job_id"])
    response = client.delete(f"/v1/jobs/{job['job_id']}")
    assert response.status_code == 409
    assert response.get_json()["error"]["status"] == "succeeded"


def test_a_chunk_delivered_too_often_fails_its_rows(app, client, settings):
    store, job_id = _queued_job(app, "a,5.1,3.5,1.4,0.2\nb,6.7,3.0,5.2,2.3\n", 2)
    # As if every earlier delivery had died with its worker.
    store.r.hset(store.key(job_id, "tries"), "0", settings.max_deliveries)
    app.extensions["inference"].send(SCORE_CHUNK, [[job_id, 0, 1, 2]])
    job = wait_for_job(client, job_id)
    assert job["status"] == "failed"
    assert job["progress"] == {"rows_total": 2, "rows_done": 0, "rows_failed": 2}
    assert "delivered" in job["error"]
    errors = read_csv(client.get(job["errors_url"]))
    assert [e["row"] for e in errors] == ["1", "2"]


def test_a_chunk_that_runs_twice_counts_once(app, client):
    store, job_id = _queued_job(app, "a,5.1,3.5,1.4,0.2\n", 1)
    service = app.extensions["inference"]
    service.send(SCORE_CHUNK, [[job_id, 0, 1, 1], [job_id, 0, 1, 1]])
    job = wait_for_job(client, job_id)
    _wait_until(lambda: store.r.hget(store.key(job_id, "tries"), "0") == b"2")
    job = client.get(f"/v1/jobs/{job_id}").get_json()
    assert job["progress"] == {"rows_total": 1, "rows_done": 1, "rows_failed": 0}
    assert [r["id"] for r in read_csv(client.get(job["result_url"]))] == ["a"]


def _wait_until(check, timeout: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
