"""Live job events over Server-Sent Events, through gunicorn as the service runs."""

from __future__ import annotations

import dataclasses
import json
import urllib.request

from api import create_app
from tests.conftest import wait_for_job


def read_events(url: str, timeout: float = 60) -> list[tuple[str, dict]]:
    """Read an SSE stream to its end: (event, data) pairs."""
    events: list[tuple[str, dict]] = []
    with urllib.request.urlopen(url, timeout=timeout) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        kind = ""
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[len("event: ") :]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[len("data: ") :])))
    return events


def submit(base: str, rows: int) -> str:
    body = "id,sepal_length,sepal_width,petal_length,petal_width\n" + "".join(
        f"r{i},5.1,3.5,1.4,0.2\n" for i in range(rows)
    )
    request = urllib.request.Request(
        base + "/v1/jobs", data=body.encode(), headers={"Content-Type": "text/csv"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["job_id"]


def test_events_of_a_running_batch_rise_to_the_final_event(api_url):
    job_id = submit(api_url, 20_000)  # 500 chunks at the tests' chunk size
    events = read_events(f"{api_url}/v1/jobs/{job_id}/events")
    kinds = [k for k, _ in events]
    assert kinds[-1] == "end" and set(kinds[:-1]) == {"progress"}
    done = [d["progress"]["rows_done"] for _, d in events]
    assert len(done) >= 3, f"expected progress on the way, saw {done}"
    assert done == sorted(done) and done[0] < 20_000
    final = events[-1][1]
    assert final["status"] == "succeeded"
    assert final["progress"] == {"rows_total": 20_000, "rows_done": 20_000, "rows_failed": 0}


def test_a_client_that_connects_after_the_end_gets_the_final_event_at_once(api_url):
    job_id = submit(api_url, 3)
    events = read_events(f"{api_url}/v1/jobs/{job_id}/events")
    assert events[-1][0] == "end"
    again = read_events(f"{api_url}/v1/jobs/{job_id}/events", timeout=10)
    assert [k for k, _ in again] == ["end"]
    assert again[0][1]["status"] == "succeeded"


def test_event_streams_are_capped_per_process(settings, worker):
    app = create_app({"SETTINGS": dataclasses.replace(settings, event_streams=1)})
    client = app.test_client()
    body = client.post("/v1/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}).get_json()
    wait_for_job(client, body["job_id"])
    first = client.get(f"/v1/jobs/{body['job_id']}/events", buffered=False)
    assert first.status_code == 200
    second = client.get(f"/v1/jobs/{body['job_id']}/events")
    assert second.status_code == 503
    assert second.headers["Retry-After"] == "5"
    first.close()
    third = client.get(f"/v1/jobs/{body['job_id']}/events")
    assert third.status_code == 200
    assert b"event: end" in third.data


def test_events_of_an_unknown_job_are_404(client):
    response = client.get("/v1/jobs/00000000-0000-4000-8000-000000000000/events")
    assert response.status_code == 404
