"""Single predictions through the queue: the original service's calls and the /v1 API."""

from __future__ import annotations

import dataclasses
import time

import pytest

from api import create_app
from tests.conftest import wait_for_job

SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]
INF_ROW = {"sepal_length": 1, "sepal_width": 1, "petal_length": 1, "petal_width": float("inf")}


def test_original_health_call(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_original_predict_call(client):
    response = client.post("/predict", json={"features": SETOSA})
    assert response.status_code == 200
    body = response.get_json()
    assert body["prediction"] == "setosa"
    assert body["class_id"] == 0
    assert set(body["probabilities"]) == {"setosa", "versicolor", "virginica"}
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-4
    assert body["probabilities"]["setosa"] > 0.9
    assert body["model_version"]


def test_predict_that_takes_too_long_is_504_with_the_job_id(settings, worker):
    impatient = dataclasses.replace(settings, predict_timeout_seconds=0.0)
    client = create_app({"SETTINGS": impatient}).test_client()
    response = client.post("/predict", json={"features": SETOSA})
    assert response.status_code == 504
    error = response.get_json()["error"]
    assert error["code"] == "timeout" and error["status_url"] == f"/v1/jobs/{error['job_id']}"
    assert wait_for_job(client, error["job_id"])["status"] == "succeeded"  # the job went on


def test_predict_accepts_features_by_name(client):
    named = dict(
        zip(["sepal_length", "sepal_width", "petal_length", "petal_width"], VIRGINICA, strict=True)
    )
    body = client.post("/predict", json={"features": named}).get_json()
    assert body["prediction"] == "virginica"


def test_readyz_and_model(client):
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["workers"] >= 1
    manifest = client.get("/v1/model").get_json()
    assert manifest["feature_names"] == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]
    assert manifest["class_names"] == ["setosa", "versicolor", "virginica"]
    assert len(manifest["sha256"]) == 64
    assert manifest["metrics"]["accuracy"] >= 0.9
    assert ready.get_json()["model_versions"] == [manifest["version"]]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"features": [5.1, 3.5, 1.4]}, 422, "features"),
        ({"features": [5.1, "x", 1.4, 0.2]}, 422, "features.sepal_width"),
        ({"features": [5.1, None, 1.4, 0.2]}, 422, "features.sepal_width"),
        ({"features": {"sepal_length": 1}}, 422, "features"),
        ({"features": "5.1,3.5"}, 422, "features"),
        ({"feature": [1, 2, 3, 4]}, 400, "features"),
        ([1, 2, 3, 4], 400, "body"),
    ],
)
def test_bad_predict_input_names_the_field(client, body, status, field):
    response = client.post("/predict", json=body)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert error["field"] == field
    assert error["message"]


def test_not_json_is_400(client):
    response = client.post("/predict", data="features=1", content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "body"


def test_v1_predict_queues_and_is_polled_by_id(client):
    response = client.post("/v1/predict", json={"instances": [SETOSA, VIRGINICA]})
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "queued"
    assert response.headers["Location"] == body["status_url"] == f"/v1/jobs/{body['job_id']}"
    job = wait_for_job(client, body["job_id"])
    assert job["status"] == "succeeded" and job["kind"] == "predict"
    assert job["progress"] == {"rows_total": 2, "rows_done": 2, "rows_failed": 0}
    assert job["model"]["name"] == "iris" and job["model"]["version"]
    result = client.get(job["result_url"]).get_json()
    assert [p["prediction"] for p in result["predictions"]] == ["setosa", "virginica"]


def test_v1_predict_wait_answers_in_the_same_call(client):
    named = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}
    response = client.post("/v1/predict?wait=10", json={"instances": [named, SETOSA]})
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "succeeded"
    assert [p["class_id"] for p in body["predictions"]] == [2, 0]


@pytest.mark.parametrize(
    ("query", "body", "status", "field"),
    [
        ("", {"instances": []}, 422, "instances"),
        ("", {"instances": [SETOSA, [1, 2]]}, 422, "instances[1]"),
        ("", {"instances": [SETOSA, INF_ROW]}, 422, "instances[1].petal_width"),
        ("?wait=soon", {"instances": [SETOSA]}, 400, "wait"),
        ("?wait=-1", {"instances": [SETOSA]}, 400, "wait"),
    ],
)  # fmt: skip
def test_bad_v1_predict_input_names_the_field(client, query, body, status, field):
    response = client.post("/v1/predict" + query, json=body)
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["field"] == field


def test_too_many_instances_is_413(client, settings):
    response = client.post(
        "/v1/predict", json={"instances": [SETOSA] * (settings.max_instances + 1)}
    )
    assert response.status_code == 413
    assert response.get_json()["error"]["field"] == "instances"


@pytest.mark.parametrize("job_id", ["00000000-0000-4000-8000-000000000000", "not-a-uuid"])
def test_unknown_job_is_404(client, job_id):
    for path in ("", "/result", "/errors"):
        response = client.get(f"/v1/jobs/{job_id}{path}")
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 404


def test_unknown_route_and_method_are_json(client):
    assert client.get("/nope").get_json()["error"]["code"] == "not_found"
    response = client.get("/predict")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"


HUGE = [1e308, 1e308, 1e308, 1e308]  # finite, but it overflows inside the model's scaler


def test_a_row_the_model_cannot_take_is_422_not_a_server_error(client):
    response = client.post("/predict", json={"features": HUGE})
    assert response.status_code == 422
    assert "cannot score this row" in response.get_json()["error"]["message"]


def test_an_integer_beyond_any_float_is_422_naming_the_feature(client):
    body = b'{"features": [1' + b"0" * 400 + b", 3.5, 1.4, 0.2]}"
    response = client.post("/predict", data=body, content_type="application/json")
    assert response.status_code == 422
    assert "sepal_length is infinite" in response.get_json()["error"]["message"]


def test_one_unscorable_row_does_not_spoil_the_others(client):
    body = client.post("/v1/predict?wait=10", json={"instances": [SETOSA, HUGE]}).get_json()
    assert body["predictions"][0]["prediction"] == "setosa"
    assert "cannot score this row" in body["predictions"][1]["error"]
    job = client.get(f"/v1/jobs/{body['job_id']}").get_json()
    assert job["progress"] == {"rows_total": 2, "rows_done": 1, "rows_failed": 1}


def test_predictions_arriving_together_share_tasks(app, settings, redis_client):
    """32 clients at once: every answer is right, and the workers ran fewer tasks than requests
    (each task scored several jobs in one call)."""
    from concurrent.futures import ThreadPoolExecutor

    from core.workers import Presence

    presence = Presence(redis_client, settings)

    def tasks_run() -> int:
        time.sleep(2 * settings.heartbeat_seconds)  # let every worker beat its latest count
        return sum(b.tasks for b in presence.live() if b.kind == "celery")

    def one(n: int) -> str:
        row = SETOSA if n % 2 else VIRGINICA
        response = app.test_client().post("/predict", json={"features": row})
        assert response.status_code == 200
        return response.get_json()["prediction"]

    before = tasks_run()
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(one, range(320)))
    assert answers == ["setosa" if n % 2 else "virginica" for n in range(320)]
    ran = tasks_run() - before
    print(f"320 predictions from 32 clients ran in {ran} tasks")
    assert ran < 320


def test_answers_reach_their_own_requests_through_gunicorn(api_url):
    """64 clients at once against the served API (gevent workers, one reply list per process):
    each gets its own job and its own row's answer, never a neighbour's."""
    import json
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    def one(n: int) -> tuple[str, str]:
        row = SETOSA if n % 2 else VIRGINICA
        request = urllib.request.Request(
            f"{api_url}/v1/predict?wait=10",
            data=json.dumps({"instances": [row]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
        assert response.status == 200 and body["status"] == "succeeded"
        return body["job_id"], body["predictions"][0]["prediction"]

    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(one, range(640)))
    assert [label for _, label in answers] == [
        "setosa" if n % 2 else "virginica" for n in range(640)
    ]
    assert len({job_id for job_id, _ in answers}) == 640


def test_a_waiting_prediction_that_is_cancelled_is_answered_at_once(app, worker, redis_client):
    """The cancel reaches the request waiting for the job (through its process's reply list),
    which answers with the cancelled job instead of waiting out ?wait=."""
    import os
    import signal
    import threading

    active = app.extensions["inference"].jobs.active
    before = set(redis_client.zrange(active, 0, -1))
    # Nobody scores predictions meanwhile (a stopped worker blocked on the lane may still be
    # handed the job by Redis, and hold it).
    os.killpg(worker.pid, signal.SIGSTOP)
    try:
        answer: dict = {}

        def wait_for_it() -> None:
            began = time.monotonic()
            response = app.test_client().post("/v1/predict?wait=20", json={"instances": [SETOSA]})
            answer.update(response.get_json(), code=response.status_code)
            answer["seconds"] = time.monotonic() - began

        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        deadline = time.monotonic() + 10
        while not (new := set(redis_client.zrange(active, 0, -1)) - before):
            assert time.monotonic() < deadline, "the prediction was never recorded"
            time.sleep(0.01)
        (job_id,) = [i.decode() for i in new]
        assert app.test_client().delete(f"/v1/jobs/{job_id}").status_code == 200
        waiter.join(10)
        assert not waiter.is_alive()
    finally:
        os.killpg(worker.pid, signal.SIGCONT)
    assert answer["code"] == 200 and answer["status"] == "cancelled", answer
    assert answer["job_id"] == job_id and answer["seconds"] < 5, answer
