"""gunicorn settings, taken from the same environment variables as everything else."""

import os
import tempfile

from core import metrics
from core.settings import Settings

LOOPBACK = ("127.0.0.1", "localhost", "::1")

_settings = Settings.from_env()
if not (_settings.api_keys or _settings.api_keys_file) and _settings.host not in LOOPBACK:
    raise SystemExit(
        f"refusing to listen on {_settings.host}: without API_KEYS (or API_KEYS_FILE) the API is "
        "open, so it only binds to 127.0.0.1; set keys to serve other hosts"
    )
bind = f"{_settings.host}:{_settings.port}"
workers = _settings.web_concurrency
# gevent: a request waiting on Redis (every prediction does) is a parked greenlet, not a thread
# the GIL has to hand over to: about a fifth less API CPU per /predict than 16 threads.
worker_class = "gevent"
worker_connections = _settings.api_connections
# Waits for a prediction (?wait=, /predict) hold a connection; keep the worker alive through them.
timeout = int(max(_settings.max_wait_seconds, _settings.predict_timeout_seconds)) + 30
graceful_timeout = 10
accesslog = "-"
if _settings.log_format == "json":
    access_log_format = (
        '{"component": "api-access", "remote": "%(h)s", "request": "%(r)s", '
        '"status": %(s)s, "bytes": "%(b)s", "seconds": %(L)s}'
    )

# gunicorn's processes share their Prometheus values through files in one directory.
metrics.use_dir(
    os.path.join(_settings.metrics_dir or tempfile.gettempdir(), f"iq-metrics-api-{os.getpid()}")
)


def child_exit(server, worker):  # gunicorn's hook: forget a dead process's live gauges
    metrics.mark_dead(worker.pid)
