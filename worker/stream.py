"""The stream worker: score records arriving on a Redis stream, in small vectorised batches.

Contract, so any Redis client can produce and consume:
  input  (STREAM_INPUT)   entries with ``id`` (the producer's correlation id) and ``features``
                          (a JSON array in the model's feature order, or an object by name)
  output (STREAM_OUTPUT)  one entry per record: ``id`` and either ``result`` (JSON: prediction,
                          class_id, probabilities, model_version) or ``error``
  dead   (STREAM_DEAD)    records delivered more than STREAM_MAX_DELIVERIES times, with ``error``

A consumer group shares the input between stream workers. Results are added and the records
acknowledged (and deleted from the input) in one MULTI/EXEC, so a record is answered once unless
its consumer dies before that; then it stays pending and a live consumer claims it (XAUTOCLAIM)
after STREAM_CLAIM_IDLE_MS. Run it with ``python -m worker.stream``.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import redis

from core import logs, metrics
from core.connection import REDIS_DOWN, connect
from core.errors import ModelError, Unprocessable
from core.features import parse_row
from core.settings import Settings
from worker.runtime import ModelRuntime
from worker.scoring import as_json, score

log = logging.getLogger(__name__)

Entry = tuple[bytes, dict[bytes, bytes]]


@dataclass(frozen=True)
class Outcome:
    entry: bytes  # the stream entry id
    id: str  # the producer's id
    result: dict | None = None
    error: str = ""


def parse_record(fields: dict[bytes, bytes], feature_names: Sequence[str]) -> list[float] | str:
    """The record's feature row, or why it cannot be scored."""
    raw = fields.get(b"features")
    if raw is None:
        return "the record has no 'features' field"
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "features is not valid JSON"
    try:
        return parse_row(value, feature_names, "features")
    except Unprocessable as exc:
        return exc.message


class StreamWorker:
    def __init__(self, settings: Settings, runtime: ModelRuntime) -> None:
        self.s = settings
        self.runtime = runtime
        block = settings.stream_block_ms / 1000
        self.r = connect(settings, read_timeout=block + settings.redis_timeout * 2)
        self.consumer = runtime.name

    def ensure_group(self) -> None:
        try:
            # From the start of the stream: records appended before any worker ran are scored too.
            self.r.xgroup_create(self.s.stream_input, self.s.stream_group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self) -> int:
        """Read and score one batch of new records; the number handled."""
        got = self.r.xreadgroup(
            self.s.stream_group,
            self.consumer,
            {self.s.stream_input: ">"},
            count=self.s.stream_batch,
            block=self.s.stream_block_ms,
        )
        entries: list[Entry] = got[0][1] if got else []
        return self.handle(entries, {})

    def claim(self) -> int:
        """Take over records left pending by a consumer that stopped answering."""
        handled = 0
        start = "0-0"
        while True:
            reply = self.r.xautoclaim(
                self.s.stream_input,
                self.s.stream_group,
                self.consumer,
                self.s.stream_claim_idle_ms,
                start,
                count=self.s.stream_batch,
            )
            start, entries = reply[0], [e for e in reply[1] if e[0] is not None]
            if entries:
                log.warning("claimed %d records left pending by another consumer", len(entries))
                handled += self.handle(entries, self._deliveries(entries))
            if start in (b"0-0", "0-0") or not entries:
                return handled

    def _deliveries(self, entries: list[Entry]) -> dict[bytes, int]:
        pending = self.r.xpending_range(
            self.s.stream_input,
            self.s.stream_group,
            min=entries[0][0],
            max=entries[-1][0],
            count=len(entries) * 2,
            consumername=self.consumer,
        )
        return {p["message_id"]: p["times_delivered"] for p in pending}

    def handle(self, entries: list[Entry], deliveries: dict[bytes, int]) -> int:
        if not entries:
            return 0
        began = time.perf_counter()
        model, manifest = self.runtime.get()
        dead: list[tuple[Entry, int]] = []
        outcomes: list[Outcome] = []  # in input order
        rows: list[list[float]] = []
        scored: list[int] = []  # where in ``outcomes`` each of ``rows`` belongs
        for entry in entries:
            times = deliveries.get(entry[0], 1)
            if times > self.s.stream_max_deliveries:
                dead.append((entry, times))
                continue
            record_id = entry[1].get(b"id", b"").decode("utf-8", "replace")
            row = parse_record(entry[1], manifest.feature_names)
            if isinstance(row, str):
                outcomes.append(Outcome(entry[0], record_id, error=row))
            else:
                scored.append(len(outcomes))
                outcomes.append(Outcome(entry[0], record_id))
                rows.append(row)
        if rows:
            answers = score(model, np.asarray(rows, dtype=np.float64))
            results = as_json(manifest.class_names, answers.class_ids, answers.probabilities)
            for i, (at, result) in enumerate(zip(scored, results, strict=True)):
                o = outcomes[at]
                if i in answers.failed:
                    outcomes[at] = Outcome(o.entry, o.id, error=answers.failed[i])
                else:
                    result["model_version"] = manifest.version
                    outcomes[at] = Outcome(o.entry, o.id, result=result)
        self._write(outcomes, dead)
        self.runtime.tasks += 1
        m = metrics.get()
        m.stream_batch_seconds.observe(time.perf_counter() - began)
        answered = sum(1 for o in outcomes if o.result is not None)
        m.stream_records.labels("scored").inc(answered)
        m.stream_records.labels("error").inc(len(outcomes) - answered)
        m.stream_records.labels("dead").inc(len(dead))
        return len(entries)

    def _write(self, outcomes: list[Outcome], dead: list[tuple[Entry, int]]) -> None:
        """Results in, records acknowledged and removed: all or nothing."""
        s = self.s
        pipe = self.r.pipeline(transaction=True)
        for o in outcomes:
            if o.result is not None:
                body = {"id": o.id, "result": json.dumps(o.result)}
            else:
                body = {"id": o.id, "error": o.error}
            pipe.xadd(s.stream_output, body, maxlen=s.stream_maxlen, approximate=True)
        for (entry_id, fields), times in dead:
            reason = f"delivered {times} times without an answer; its consumers kept dying"
            log.error("record %s to the dead-letter stream: %s", entry_id, reason)
            body = {**fields, b"entry": entry_id, b"error": reason.encode()}
            pipe.xadd(s.stream_dead, body, maxlen=s.stream_maxlen, approximate=True)
        ids = [o.entry for o in outcomes] + [entry[0] for entry, _ in dead]
        pipe.xack(s.stream_input, s.stream_group, *ids)
        pipe.xdel(s.stream_input, *ids)
        pipe.execute()

    def run(self, stop: threading.Event) -> None:
        """Claim, read, score, until ``stop`` is set; ride out Redis outages."""
        next_claim = 0.0
        ready = False
        while not stop.is_set():
            try:
                if not ready:
                    self.runtime.get()
                    self.ensure_group()
                    ready = True
                if time.monotonic() >= next_claim:
                    self.claim()
                    next_claim = time.monotonic() + self.s.stream_claim_idle_ms / 2000
                self.read()
            except ModelError as exc:
                log.error("cannot score: %s", exc)
                stop.wait(5)
            except REDIS_DOWN as exc:
                log.warning("redis unreachable (%s); retrying", exc)
                ready = False
                stop.wait(1)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                ready = False  # Redis lost the group (restarted without its data): make it again


def main() -> None:
    settings = Settings.from_env()
    logs.configure("stream", settings.log_format)
    if settings.stream_metrics_port:
        metrics.serve(settings.stream_metrics_port)
    runtime = ModelRuntime(settings, kind="stream")
    runtime.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("stream worker %s reading %s", runtime.name, settings.stream_input)
    try:
        StreamWorker(settings, runtime).run(stop)
    finally:
        runtime.leave()


if __name__ == "__main__":
    main()
