"""A one-line progress bar on stderr (a line every few seconds when stderr is not a terminal)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    def __init__(self, out: TextIO = sys.stderr, width: int = 30) -> None:
        self.out = out
        self.width = width
        self.tty = out.isatty()
        self.started = time.monotonic()
        self.last_line = 0.0

    def update(self, job: dict) -> None:
        p = job["progress"]
        total, done, failed = p["rows_total"], p["rows_done"], p["rows_failed"]
        handled = done + failed
        fraction = handled / total if total else 0.0
        filled = int(fraction * self.width)
        elapsed = max(time.monotonic() - self.started, 1e-6)
        line = (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {handled:,}/{total:,} rows "
            f"{fraction:4.0%}  {handled / elapsed:,.0f} rows/s  {failed:,} failed  {job['status']}"
        )
        now = time.monotonic()
        if self.tty:
            self.out.write("\r" + line)
            self.out.flush()
        elif now - self.last_line >= 2 or job["status"] not in ("queued", "running"):
            self.out.write(line + "\n")
            self.last_line = now

    def close(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()
