"""A small HTTP client for the service's API (standard library only)."""

from __future__ import annotations

import http.client
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO


class CliError(Exception):
    """Ends the program with a one-line message and a non-zero exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class ApiClient:
    def __init__(self, base_url: str, api_key: str = "", timeout: float = 60.0) -> None:
        self.base = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def _open(self, method: str, path: str, data: Any = None, headers: dict | None = None):
        headers = dict(headers or {})
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers=headers
        )
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                raise CliError(f"{exc.code}: {_error_message(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(f"cannot reach the API at {self.base}: {reason}", code=2) from None

    def json(self, method: str, path: str, body: Any = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        with self._open(method, path, data, headers) as response:
            return json.loads(response.read())

    def upload(self, path: Path) -> dict:
        size = path.stat().st_size
        headers = {"Content-Type": "text/csv", "Content-Length": str(size)}
        with open(path, "rb") as fh, self._open("POST", "/v1/jobs", fh, headers) as response:
            return json.loads(response.read())

    def download(self, path: str, out: BinaryIO) -> None:
        with self._open("GET", path) as response:
            shutil.copyfileobj(response, out, 1 << 20)

    def events(self, path: str) -> Iterator[tuple[str, dict]]:
        """(event, data) pairs of a Server-Sent Events stream, until the server closes it."""
        with self._open("GET", path, headers={"Accept": "text/event-stream"}) as response:
            kind = "message"
            try:
                for raw in response:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        yield kind, json.loads(line[5:].strip())
                        kind = "message"
            except (OSError, http.client.HTTPException, ValueError):
                return  # the stream broke off; the caller falls back to polling


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read())
        return body["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return exc.reason or "error"
