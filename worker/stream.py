"""The stream worker: score records arriving on a Redis stream, in small vectorised batches.

Contract, so any Redis client can produce and consume:
  input  (STREAM_INPUT)   entries with ``id`` (the producer's correlation id) and ``features``
                          (a JSON array in the model's feature order, or an object by name)
  output (STREAM_OUTPUT)  one entry per record: ``id`` and either ``result`` (JSON: prediction,
                          class_id, probabilities, model_version) or ``error``
  dead   (STREAM_DEAD)    records delivered more than STREAM_MAX_DELIVERIES times, with ``error``

A consumer group shares the input between stream workers. Results are added, the records
acknowledged, and the input trimmed of what every consumer group has answered, in one atomic
call (a Lua script; a MULTI/EXEC when some go to the dead-letter stream), so a record is
answered once unless its consumer dies before that; then it stays pending and a live consumer
claims it (XAUTOCLAIM) after STREAM_CLAIM_IDLE_MS. Run it with ``python -m worker.stream``.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Sequence

import numpy as np
import redis

from core import logs, metrics
from core.connection import REDIS_DOWN, connect
from core.errors import ModelError, Unprocessable
from core.features import parse_row
from core.settings import Settings
from worker.runtime import ModelRuntime
from worker.scoring import result_texts, score

log = logging.getLogger(__name__)

Entry = tuple[bytes, dict[bytes, bytes]]


#: (field, value) of one answer: ``result`` with the JSON text, or ``error`` with the reason.
Answer = tuple[str, str]

#: The characters of a JSON array of plain numbers (whitespace aside).
_NUMBER_ARRAY = b"0123456789.,-+eE[] "

#: Answers added, records acknowledged, and the input trimmed of every record all its consumer
#: groups have answered (one XTRIM costs far less than an XDEL per record): one atomic call.
#: KEYS: output, input. ARGV: group, maxlen, how many answers, then (record id, field, value)
#: per answer, then the entry ids.
_WRITE_LUA = """
local group, maxlen, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
for i = 0, n - 1 do
  local at = 4 + 3 * i
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*',
             'id', ARGV[at], ARGV[at + 1], ARGV[at + 2])
end
for at = 4 + 3 * n, #ARGV, 1000 do
  local ids = {}
  for i = at, math.min(at + 999, #ARGV) do ids[#ids + 1] = ARGV[i] end
  redis.call('XACK', KEYS[2], group, unpack(ids))
end
local function parts(id)
  local ms, seq = string.match(id, '(%d+)-(%d+)')
  return tonumber(ms), tonumber(seq)
end
local function before(a, b)
  local am, as = parts(a)
  local bm, bs = parts(b)
  return am < bm or (am == bm and as < bs)
end
-- Per group, the first record it may still need: its oldest pending one, else the one after
-- the last it was given.
local floor = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[2])) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  local bound
  if info['pending'] > 0 then
    bound = redis.call('XPENDING', KEYS[2], info['name'])[2]
  else
    local ms, seq = parts(info['last-delivered-id'])
    bound = string.format('%.0f-%.0f', ms, seq + 1)
  end
  if floor == nil or before(bound, floor) then floor = bound end
end
if floor then redis.call('XTRIM', KEYS[2], 'MINID', floor) end
return n
"""


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


def _entries(reply: list | None) -> list[Entry]:
    """XREADGROUP's raw reply (one stream; RESP2 or RESP3) as (entry id, fields)."""
    if not reply:
        return []
    entries = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
    return [
        (entry_id, dict(zip(flat[::2], flat[1::2], strict=True)))
        for entry_id, flat in entries
        if flat is not None
    ]


def plain_rows(records: Sequence[dict[bytes, bytes]], width: int) -> np.ndarray | None:
    """The records' features at once, when every one is a JSON array of ``width`` finite plain
    numbers (what producers send); None when any needs parse_record's care."""
    blobs = [fields.get(b"features") or b"" for fields in records]
    if not all(blob[:1] == b"[" and blob[-1:] == b"]" for blob in blobs):
        return None
    joined = b",".join(blobs)
    # Only number characters, and one "[" and "]" per record: each record is one flat array.
    if joined.translate(None, _NUMBER_ARRAY) or joined.count(b"[") != len(blobs):
        return None
    if joined.count(b"]") != len(blobs):
        return None
    try:
        rows = np.asarray(json.loads(b"[" + joined + b"]"), dtype=np.float64)
    except (ValueError, OverflowError):
        return None
    if rows.shape != (len(blobs), width) or not np.isfinite(rows).all():
        return None
    return rows


def answer(model, manifest, records: Sequence[dict[bytes, bytes]]) -> list[Answer]:
    """Each record's answer, in order: all at once when they are plain, else one by one."""
    rows = plain_rows(records, len(manifest.feature_names))
    if rows is not None:
        scored = score(model, rows)
        if not scored.failed:
            texts = result_texts(
                manifest.class_names, manifest.version, scored.class_ids, scored.probabilities
            )
            return [("result", text) for text in texts]
    answers: list[Answer] = [("error", "")] * len(records)
    good: list[int] = []
    parsed: list[list[float]] = []
    for i, fields in enumerate(records):
        row = parse_record(fields, manifest.feature_names)
        if isinstance(row, str):
            answers[i] = ("error", row)
        else:
            good.append(i)
            parsed.append(row)
    if parsed:
        scored = score(model, np.asarray(parsed, dtype=np.float64))
        texts = result_texts(
            manifest.class_names, manifest.version, scored.class_ids, scored.probabilities
        )
        for k, (i, text) in enumerate(zip(good, texts, strict=True)):
            answers[i] = ("error", scored.failed[k]) if k in scored.failed else ("result", text)
    return answers


class StreamWorker:
    def __init__(self, settings: Settings, runtime: ModelRuntime) -> None:
        self.s = settings
        self.runtime = runtime
        block = settings.stream_block_ms / 1000
        self.r = connect(settings, read_timeout=block + settings.redis_timeout * 2)
        self.consumer = runtime.name
        self._write_script = self.r.register_script(_WRITE_LUA)

    def ensure_group(self) -> None:
        try:
            # From the start of the stream: records appended before any worker ran are scored too.
            self.r.xgroup_create(self.s.stream_input, self.s.stream_group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, until: float) -> int:
        """Read and score batches of new records until none are waiting or ``until`` (a
        monotonic time) passes; the number handled. While one batch is scored, Redis writes
        the answers of the batch before and reads the next one: one worker keeps both busy."""
        s = self.s
        got = self.r.xreadgroup(
            s.stream_group, self.consumer, {s.stream_input: ">"},
            count=s.stream_batch, block=s.stream_block_ms,
        )  # fmt: skip
        batch: list[Entry] = got[0][1] if got else []
        if not batch:
            return 0
        handled = 0
        written = False  # a write whose reply is still to be read
        conn = self.r.connection_pool.get_connection()
        try:
            while batch:
                ahead = time.monotonic() < until
                if ahead:
                    conn.send_command(
                        "XREADGROUP", "GROUP", s.stream_group, self.consumer,
                        "COUNT", s.stream_batch, "STREAMS", s.stream_input, ">",
                    )  # fmt: skip
                began = time.perf_counter()
                model, manifest = self.runtime.get()
                answers = answer(model, manifest, [fields for _, fields in batch])
                if written:
                    conn.read_response()
                following = _entries(conn.read_response()) if ahead else []
                conn.send_command("EVALSHA", self._write_script.sha, 2, s.stream_output,
                                  s.stream_input, *self._write_args(batch, answers))  # fmt: skip
                written = True
                self._observe(began, answers, 0)
                handled += len(batch)
                batch = following
            conn.read_response()
        except BaseException:
            conn.disconnect()  # replies may still be on their way
            raise
        finally:
            self.r.connection_pool.release(conn)
        return handled

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
        live: list[Entry] = []
        dead: list[tuple[Entry, int]] = []
        for entry in entries:
            times = deliveries.get(entry[0], 1)
            if times > self.s.stream_max_deliveries:
                dead.append((entry, times))
            else:
                live.append(entry)
        answers = answer(model, manifest, [fields for _, fields in live])
        if dead:
            self._write_with_dead(live, answers, dead)
        else:
            args = self._write_args(live, answers)
            self._write_script(keys=[self.s.stream_output, self.s.stream_input], args=args)
        self._observe(began, answers, len(dead))
        return len(entries)

    def _observe(self, began: float, answers: list[Answer], dead: int) -> None:
        self.runtime.tasks += 1
        m = metrics.get()
        m.stream_batch_seconds.observe(time.perf_counter() - began)
        answered = sum(1 for field, _ in answers if field == "result")
        m.stream_records.labels("scored").inc(answered)
        m.stream_records.labels("error").inc(len(answers) - answered)
        m.stream_records.labels("dead").inc(dead)

    def _write_args(self, live: list[Entry], answers: list[Answer]) -> list:
        """The arguments of _WRITE_LUA: answers in, records acknowledged, input trimmed."""
        s = self.s
        args: list = [s.stream_group, s.stream_maxlen, len(answers)]
        for (_, fields), (field, value) in zip(live, answers, strict=True):
            args += (fields.get(b"id", b""), field, value)
        args += [entry_id for entry_id, _ in live]
        return args

    def _write_with_dead(
        self, live: list[Entry], answers: list[Answer], dead: list[tuple[Entry, int]]
    ) -> None:
        """As _write, with records that go to the dead-letter stream (rare): a MULTI/EXEC."""
        s = self.s
        pipe = self.r.pipeline(transaction=True)
        for (_, fields), (field, value) in zip(live, answers, strict=True):
            body = {"id": fields.get(b"id", b""), field: value}
            pipe.xadd(s.stream_output, body, maxlen=s.stream_maxlen, approximate=True)
        for (entry_id, fields), times in dead:
            reason = f"delivered {times} times without an answer; its consumers kept dying"
            log.error("record %s to the dead-letter stream: %s", entry_id, reason)
            body = {**fields, b"entry": entry_id, b"error": reason.encode()}
            pipe.xadd(s.stream_dead, body, maxlen=s.stream_maxlen, approximate=True)
        ids = [entry_id for entry_id, _ in live] + [entry[0] for entry, _ in dead]
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
                    self.r.script_load(_WRITE_LUA)  # read() calls it by its SHA alone
                    ready = True
                if time.monotonic() >= next_claim:
                    self.claim()
                    next_claim = time.monotonic() + self.s.stream_claim_idle_ms / 2000
                self.read(until=next_claim)
            except ModelError as exc:
                log.error("cannot score: %s", exc)
                stop.wait(5)
            except REDIS_DOWN as exc:
                log.warning("redis unreachable (%s); retrying", exc)
                ready = False
                stop.wait(1)
            except redis.exceptions.NoScriptError:
                ready = False  # Redis lost its scripts (SCRIPT FLUSH): load them again
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
