"""Prediction jobs taken off the predict lane (core/lane.py) in batches, by a thread in each
worker process, next to the Celery tasks that process runs; scored by worker.batch.

Micro-batching happens here: a batch is whatever is waiting when the thread looks, up to
PREDICT_BATCH_MAX; while requests keep coming (the last batch had company), it waits up to
PREDICT_BATCH_WAIT_MS for more. A lone request never waits. If Redis goes away, the thread
keeps the batch it holds and scores it once Redis is back; if the process dies, the sweeper
puts the batch's unfinished jobs back on the lane.
"""

from __future__ import annotations

import logging
import threading
import time

from core.connection import REDIS_DOWN, connect
from core.lane import PredictLane
from core.settings import Settings
from worker import batch
from worker.runtime import ModelRuntime

log = logging.getLogger(__name__)

#: How long one wait for the first job of a batch lasts (the thread then checks for a stop).
BLOCK_SECONDS = 1.0
#: A take that answers this fast found its job already waiting: requests are arriving together.
QUEUED_SECONDS = 0.0005


class PredictionServer:
    def __init__(self, settings: Settings, runtime: ModelRuntime) -> None:
        self.s = settings
        self.runtime = runtime
        self.lane = PredictLane(settings)
        self.r = connect(settings, read_timeout=BLOCK_SECONDS + settings.redis_timeout * 2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name="predict-lane", daemon=True)

    def start(self) -> PredictionServer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Take no new batch; let the one in hand finish."""
        self._stop.set()
        self._thread.join(timeout)

    def _next_batch(self, last: int) -> list[str]:
        most = self.s.predict_batch_max
        began = time.perf_counter()
        held = self.lane.take(self.r, most, BLOCK_SECONDS)
        # Under load (the last batch had company, or this one was already waiting), wait a
        # little for more: bigger batches cost less a prediction. A lone client never waits.
        busy = last > 1 or len(held) > 1 or time.perf_counter() - began < QUEUED_SECONDS
        if held and busy and len(held) < most and self.s.predict_batch_wait_ms > 0:
            time.sleep(self.s.predict_batch_wait_ms / 1000)
            held += self.lane.take_waiting(self.r, most - len(held))
        return held

    def run(self) -> None:
        held: list[str] = []
        last = 0
        while not self._stop.is_set():
            try:
                if not held:
                    held = self._next_batch(last)
                if held:
                    batch.score_instance_batch(self.runtime, held)
                    last, held = len(held), []
            except REDIS_DOWN as exc:
                log.warning("redis unreachable (%s); holding %d predictions", exc, len(held))
                self._stop.wait(1)
            except Exception:  # the sweeper sends unfinished jobs again
                log.exception("a batch of %d predictions failed", len(held))
                held = []
