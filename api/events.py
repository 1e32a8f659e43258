"""Live job events: a Server-Sent Events stream of a job's progress, ending with its final status.

Each open stream holds one gunicorn thread, so a process serves at most EVENT_STREAMS of them
(half its threads by default) and answers 503 past that: watching jobs never starves predictions.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

from flask import Blueprint, Response, stream_with_context

from api.jobs import job_body, load_job
from api.services import services
from core.connection import REDIS_DOWN
from core.errors import Unavailable

bp = Blueprint("events", __name__)

#: A comment line this often keeps proxies from closing a quiet stream.
KEEPALIVE_SECONDS = 15.0
#: At most this many job reads a second per stream, however fast chunks finish.
MIN_INTERVAL_SECONDS = 0.1
#: A stream ends after this long; EventSource clients reconnect by themselves.
MAX_STREAM_SECONDS = 3600.0


def sse(event: str, data: dict, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@bp.get("/v1/jobs/<job_id>/events")
def events(job_id: str):
    """Live progress of a job as Server-Sent Events.
    ---
    get:
      tags: [jobs]
      summary: Watch a job live (Server-Sent Events)
      description: >
        A `progress` event (data: the job record) each time rows move, then one `end` event with
        the final status, after which the stream closes. A job that already ended sends its `end`
        event at once.
      parameters:
        - {in: path, name: job_id, required: true, schema: {type: string}}
      responses:
        200:
          description: An event stream.
          content:
            text/event-stream:
              schema: {type: string}
        404: {$ref: "#/components/responses/Error"}
        503: {$ref: "#/components/responses/Error"}
    """
    job = load_job(job_id)
    slots = services().event_slots
    if not slots.acquire(blocking=False):
        raise Unavailable(
            "too many live event streams on this server; poll /v1/jobs/<id> instead",
            retry_after=5,
        )
    store = services().jobs
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            slots.release()

    def generate() -> Iterator[bytes]:
        pubsub = store.r.pubsub(ignore_subscribe_messages=True)
        try:
            # Subscribe before the first read, so no change can slip between the two.
            pubsub.subscribe(store.key(job.id, "events"))
            last = None
            seq = 0
            started = time.monotonic()
            while time.monotonic() - started < MAX_STREAM_SECONDS:
                current = store.get(job.id)
                if current is None:
                    yield sse("error", {"error": {"code": "not_found", "message": "job expired"}})
                    return
                state = (current.status, current.rows_done, current.rows_failed)
                if state != last:
                    last, seq = state, seq + 1
                    kind = "end" if current.status.finished else "progress"
                    yield sse(kind, job_body(current), seq)
                if current.status.finished:
                    return
                read_at = time.monotonic()
                if pubsub.get_message(timeout=KEEPALIVE_SECONDS) is None:
                    yield b": keepalive\n\n"
                    continue
                time.sleep(max(0.0, MIN_INTERVAL_SECONDS - (time.monotonic() - read_at)))
                while pubsub.get_message(timeout=0) is not None:
                    pass  # coalesce: one read answers every message so far
        except REDIS_DOWN:
            message = "the job store (Redis) became unreachable; reconnect to resume"
            yield sse("error", {"error": {"code": "unavailable", "message": message}})
        finally:
            pubsub.close()
            release()

    response = Response(stream_with_context(generate()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    response.call_on_close(release)
    return response
