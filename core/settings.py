"""One typed settings object, read from the environment in one place.

Every other module takes a ``Settings`` instead of reading ``os.environ`` itself, so tests build
the service with their own values and docker-compose.yml documents the same names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

_MiB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    #: Redis for the broker and the job store.
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Seconds to wait for Redis to connect or answer before the API says 503.
    redis_timeout: float = 2.0
    #: Folder of registered models: <registry>/<name>/<version>/{model.joblib,manifest.json}.
    model_registry: str = "models"
    #: Which registered model the workers serve.
    model_name: str = "iris"
    #: Which version of it; empty means the registry's active version.
    model_version: str = ""
    #: How long a job and everything it stored live in Redis.
    job_ttl_seconds: int = 24 * 3600
    #: Data rows per chunk of a CSV batch; each chunk is one task ...
    chunk_rows: int = 20_000
    #: ... and at most this many bytes of them (wide rows make smaller chunks).
    chunk_bytes: int = 8 * _MiB
    #: Largest accepted request body (413 above it).
    max_upload_bytes: int = 200 * _MiB
    #: Most data rows one CSV job may hold (413 above it).
    max_rows_per_job: int = 5_000_000
    #: Most instances in one /v1/predict request (413 above it).
    max_instances: int = 1000
    #: How long POST /predict waits for its answer before 504.
    predict_timeout_seconds: float = 10.0
    #: Cap on ?wait= for POST /v1/predict.
    max_wait_seconds: float = 30.0
    #: A worker takes up to this many waiting predictions off the predict lane to score in one
    #: call (1: one at a time) ...
    predict_batch_max: int = 64
    #: ... and, when they arrive together, waits this many ms for more (0: never waits).
    predict_batch_wait_ms: float = 2.0
    #: How many pool processes of each worker take predictions (0: all). One takes bigger
    #: batches than two sharing the lane, and a batch costs about the same whatever its size.
    predict_processes: int = 1
    #: How many times one chunk may be delivered before its rows are failed.
    max_deliveries: int = 3
    #: Redis broker visibility timeout: a task taken by a worker that died (or cut off by a
    #: Redis restart) is delivered again after this long. Chunks take well under a second.
    visibility_timeout_seconds: int = 600
    #: Hard limit on one task; well below the visibility timeout.
    task_time_limit_seconds: int = 120
    #: How often a worker looks for tasks whose worker died (older than the visibility timeout).
    restore_interval_seconds: int = 30
    #: How often each worker process reports that it is alive with its model.
    heartbeat_seconds: float = 5.0
    #: A worker not heard from for this long does not count for /readyz.
    heartbeat_ttl_seconds: float = 20.0
    #: Address and port the API binds.
    host: str = "127.0.0.1"
    port: int = 5000
    #: gunicorn processes, and connections each serves at once (gevent: a request is a greenlet,
    #: and one waiting on Redis costs next to nothing while others run).
    web_concurrency: int = 2
    api_connections: int = 1000
    #: Worker processes per Celery worker (0: one per core).
    worker_concurrency: int = 0
    #: Prefix of every Redis key the service owns.
    key_prefix: str = "iq"
    #: "tenant:key,tenant:key": turns API keys on. Without keys the API only binds to loopback.
    api_keys: str = ""
    #: A file of "tenant:sha256-of-key" lines, instead of (or beside) API_KEYS.
    api_keys_file: str = ""
    #: Requests per minute per tenant (0: no limit); counted in Redis, across API processes.
    rate_limit_per_minute: int = 6000
    #: Most columns in an uploaded CSV, and most bytes in one of its rows (413 above either).
    max_columns: int = 200
    max_row_bytes: int = 65536
    #: Largest JSON body (/predict, /v1/predict).
    max_json_bytes: int = 2 * _MiB
    #: Where gunicorn and Celery prefork processes keep Prometheus metrics (made if missing).
    metrics_dir: str = ""
    #: Ports of the Celery worker's and the stream worker's /metrics (0: off).
    worker_metrics_port: int = 0
    stream_metrics_port: int = 0
    #: "json" for JSON log lines (the default), "text" for plain ones.
    log_format: str = "json"
    #: Live job events (SSE) open at once per API process; each holds a thread. 0: half the threads.
    event_streams: int = 0
    #: Redis Streams: where producers append records, where results go, and the dead letters.
    stream_input: str = "inference:requests"
    stream_output: str = "inference:results"
    stream_dead: str = "inference:dead"
    stream_group: str = "inference"
    #: Records a stream worker reads and scores at once, and how long it blocks for them.
    stream_batch: int = 500
    stream_block_ms: int = 1000
    #: A record pending this long with a dead consumer is claimed by a live one.
    stream_claim_idle_ms: int = 30_000
    #: Deliveries of one stream record before it goes to the dead-letter stream.
    stream_max_deliveries: int = 3
    #: Approximate cap on the output and dead-letter streams' length.
    stream_maxlen: int = 1_000_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from environment variables named like the fields, upper-cased."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = environ.get(f.name.upper())
            if raw is None or raw == "":
                continue
            kind = type(f.default)
            try:
                values[f.name] = kind(raw)
            except ValueError:
                raise ValueError(
                    f"{f.name.upper()}={raw!r} is not a valid {kind.__name__}"
                ) from None
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def env(self) -> dict[str, str]:
        """The settings as environment variables, for starting child processes."""
        return {f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}
