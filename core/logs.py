"""JSON log lines for every process, carrying the job id when there is one."""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime

#: The job being handled in this context (a request, a task); added to every log line.
job_id: contextvars.ContextVar[str] = contextvars.ContextVar("job_id", default="")


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "component": self.component,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        current = getattr(record, "job_id", "") or job_id.get()
        if current:
            line["job_id"] = current
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(component: str, fmt: str = "json", level: int | str = logging.INFO) -> None:
    """Send this process's logs to stderr, as JSON lines (or plain text with fmt="text")."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(component))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
