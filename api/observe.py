"""What an operator watches: request metrics, cluster gauges read from Redis, job-tagged logs."""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, g, request

from api.services import services
from core import logs, metrics
from core.queue import batch_queue

bp = Blueprint("observe", __name__)


def _cluster_gauges() -> bytes:
    """Gauges read from Redis at scrape time: queue depth, streams, active jobs, live workers."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    svc = services()
    s = svc.settings
    reg = CollectorRegistry()
    depth = Gauge("queue_depth", "Tasks waiting in a queue", ["queue"], registry=reg)
    pipe = svc.redis.pipeline(transaction=False)
    queues = [batch_queue(s), svc.lane.key]
    for q in queues:
        pipe.llen(q)
    pipe.zcard(svc.jobs.active)
    pipe.xlen(s.stream_input)
    counts = pipe.execute()
    for q, n in zip(queues, counts, strict=False):
        depth.labels(q).set(n)
    Gauge("jobs_active", "Jobs not yet ended", registry=reg).set(counts[len(queues)])
    Gauge("stream_backlog", "Records on the input stream", registry=reg).set(counts[-1])
    live = Gauge("workers_live", "Worker processes with a recent heartbeat", ["kind"], registry=reg)
    beats = svc.presence.live()
    for kind in ("celery", "stream"):
        live.labels(kind).set(sum(1 for b in beats if b.kind == kind and b.model_version))
    return generate_latest(reg)


@bp.get("/metrics")
def metrics_endpoint():
    """Prometheus metrics.
    ---
    get:
      tags: [operations]
      summary: Metrics in Prometheus text format
      responses:
        200:
          description: Requests by route and status, latency, queue depth, jobs, workers.
          content:
            text/plain:
              schema: {type: string}
        503: {$ref: "#/components/responses/Error"}
    """
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    body = generate_latest(metrics.registry()) + _cluster_gauges()
    return Response(body, content_type=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    m = metrics.get()

    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()
        logs.job_id.set("")

    @app.after_request
    def record(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        m.requests.labels(route, request.method, str(response.status_code)).inc()
        if "started" in g:
            m.latency.labels(route).observe(time.perf_counter() - g.started)
        return response
