"""Micro-batching: single predictions that arrive together in one API process go to the workers
as one task, to be scored in one vectorised call. Each request keeps its own job record, so
polling, durability (the sweeper re-sends a lost job on its own) and the JSON wire stay as they
are; only the Celery message is shared."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core.errors import Unavailable


@dataclass
class _Item:
    job_id: str
    sent: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class Batcher:
    def __init__(self, send: Callable[[list[str]], None], wait_ms: float, max_size: int) -> None:
        self._send = send
        self._wait = wait_ms / 1000
        self._max = max_size
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, job_id: str, timeout: float = 10.0) -> None:
        """Put the job in the next batch; return once that batch is on the queue.

        :raises: whatever sending the batch raised (Redis down: the API answers 503).
        """
        self._start()
        item = _Item(job_id)
        self._queue.put(item)
        if not item.sent.wait(timeout):
            raise Unavailable("the prediction could not be queued in time")
        if item.error is not None:
            raise item.error

    def _start(self) -> None:
        # Started on first use, so it lives in the process that serves (after gunicorn forks).
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        last_size = 0
        while True:
            batch = [self._queue.get()]
            # Wait for company only under load (the last batch had some): a lone client
            # pays no extra latency.
            deadline = time.monotonic() + (self._wait if last_size > 1 else 0.0)
            while len(batch) < self._max:
                # Whatever queued while the last batch was being sent joins at once; with a
                # wait bound, also what arrives within it.
                remaining = deadline - time.monotonic()
                try:
                    if remaining > 0:
                        batch.append(self._queue.get(timeout=remaining))
                    else:
                        batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            last_size = len(batch)
            error: BaseException | None = None
            try:
                self._send([item.job_id for item in batch])
            except Exception as exc:  # handed to every request of the batch
                error = exc
            for item in batch:
                item.error = error
                item.sent.set()
