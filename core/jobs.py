"""Jobs are the service's own records in Redis, not Celery results.

Keys, all under ``<prefix>:job:<id>`` and all expiring with the job:
  (hash)        the record: kind, status, owner, counters, timestamps, model, error, layout
  :in:<n>       a chunk's input rows, deleted once the chunk is done
  :out:<n>      a chunk's scored rows (CSV, or JSON for a prediction job)
  :err:<n>      a chunk's "row,error" lines
  :done         set of finished chunk numbers: a chunk counts once however often it runs
  :tries        hash chunk -> deliveries, for the redelivery cap
  :notify       a list pushed once when the job ends, for clients that wait: the final status,
                or for a prediction job [the record's fields, the answers] as JSON
  :events       a pub/sub channel told each time the job moves, for live event streams
  :chunks       hash chunk -> "first_row rows", so a lost chunk can be sent again
and ``<prefix>:jobs:active``, a sorted set of unfinished jobs by the time they last moved, which
the sweeper (worker/sweeper.py) reads to find jobs whose task messages were lost.
Each transition is one Lua script, so it is atomic and one round trip.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis

from core.settings import Settings


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    status: JobStatus
    owner: str
    rows_total: int
    rows_done: int
    rows_failed: int
    chunks_total: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    model_name: str | None
    model_version: str | None
    error: str | None
    layout: str | None

    @classmethod
    def from_hash(cls, job_id: str, h: dict[bytes, bytes]) -> Job:
        s = {k.decode(): v.decode() for k, v in h.items()}
        return cls(
            id=job_id,
            kind=s["kind"],
            status=JobStatus(s["status"]),
            owner=s.get("owner", ""),
            rows_total=int(s.get("rows_total", 0)),
            rows_done=int(s.get("rows_done", 0)),
            rows_failed=int(s.get("rows_failed", 0)),
            chunks_total=int(s.get("chunks_total", 0)),
            created_at=s["created_at"],
            started_at=s.get("started_at") or None,
            finished_at=s.get("finished_at") or None,
            model_name=s.get("model_name") or None,
            model_version=s.get("model_version") or None,
            error=s.get("error") or None,
            layout=s.get("layout") or None,
        )


# KEYS: job, tries, in, events, active.  ARGV: chunk, now, job id, now (epoch seconds).
# -> {status, deliveries, layout, input} or {"gone"}
_BEGIN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
local tries = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('ZADD', KEYS[5], 'XX', ARGV[4], ARGV[3])
redis.call('PEXPIRE', KEYS[2], redis.call('PTTL', KEYS[1]))
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' then
  status = 'running'
  redis.call('HSET', KEYS[1], 'status', status, 'started_at', ARGV[2])
  redis.call('PUBLISH', KEYS[4], status)
end
return {status, tries, redis.call('HGET', KEYS[1], 'layout') or '',
        redis.call('GET', KEYS[3]) or false}
"""

# KEYS: job, done, out, err, in, notify, events, active.
# ARGV: chunk, out, err, rows ok, rows failed, now, model name, model version, chunk failure,
#       job id, now (epoch seconds).
# -> 'gone' | 'duplicate' | 'counted' | the job's final status when this chunk was the last.
_FINISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 'duplicate' end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('PEXPIRE', KEYS[2], ttl)
if ARGV[2] ~= '' then redis.call('SET', KEYS[3], ARGV[2], 'PX', ttl) end
if ARGV[3] ~= '' then redis.call('SET', KEYS[4], ARGV[3], 'PX', ttl) end
redis.call('DEL', KEYS[5])
redis.call('HINCRBY', KEYS[1], 'rows_done', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'rows_failed', ARGV[5])
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[1], 'model_name', ARGV[7], 'model_version', ARGV[8])
end
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[9]) end
if redis.call('SCARD', KEYS[2]) < tonumber(redis.call('HGET', KEYS[1], 'chunks_total')) then
  redis.call('ZADD', KEYS[8], 'XX', ARGV[11], ARGV[10])
  redis.call('PUBLISH', KEYS[7], 'progress')
  return 'counted'
end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' or status == 'running' then
  status = 'succeeded'
  if redis.call('HEXISTS', KEYS[1], 'error') == 1 then status = 'failed' end
  redis.call('HSET', KEYS[1], 'status', status, 'finished_at', ARGV[6])
  local signal = status
  if redis.call('HGET', KEYS[1], 'kind') == 'predict' then
    -- a prediction's waiter gets the record and the answers with the signal itself
    signal = cjson.encode({redis.call('HGETALL', KEYS[1]), ARGV[2]})
  end
  redis.call('RPUSH', KEYS[6], signal)
  redis.call('PEXPIRE', KEYS[6], ttl)
end
redis.call('ZREM', KEYS[8], ARGV[10])
redis.call('PUBLISH', KEYS[7], status)
return status
"""

# KEYS: job, chunks, active, a list to enqueue on, then one key per input.
# ARGV: ttl, job id, now (epoch), enqueue (1/0), n, n (field, value) pairs of the record,
#       m, each chunk's "first_row rows" (m of them), then each input's data.
_CREATE = """
local ttl, job_id = tonumber(ARGV[1]), ARGV[2]
local n = tonumber(ARGV[5])
local record = {}
for i = 6, 5 + 2 * n do record[#record + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(record))
redis.call('EXPIRE', KEYS[1], ttl)
local at = 6 + 2 * n
local chunks = tonumber(ARGV[at])
for first = 0, chunks - 1, 1000 do
  local meta = {}
  for c = first, math.min(first + 999, chunks - 1) do
    meta[#meta + 1] = c
    meta[#meta + 1] = ARGV[at + 1 + c]
  end
  redis.call('HSET', KEYS[2], unpack(meta))
end
if chunks > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
redis.call('ZADD', KEYS[3], ARGV[3], job_id)
at = at + 1 + chunks
for k = 5, #KEYS do
  redis.call('SET', KEYS[k], ARGV[at], 'EX', ttl)
  at = at + 1
end
if ARGV[4] == '1' then redis.call('RPUSH', KEYS[4], job_id) end
return 1
"""

# KEYS: job, notify, events, active.  ARGV: now, job id.  -> the status after, or 'gone'.
_CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'gone' end
if status == 'queued' or status == 'running' then
  status = 'cancelled'
  redis.call('HSET', KEYS[1], 'status', status, 'finished_at', ARGV[1])
  redis.call('RPUSH', KEYS[2], status)
  redis.call('PEXPIRE', KEYS[2], redis.call('PTTL', KEYS[1]))
  redis.call('PUBLISH', KEYS[3], status)
end
redis.call('ZREM', KEYS[4], ARGV[2])
return status
"""


@dataclass(frozen=True)
class ChunkStart:
    status: JobStatus
    deliveries: int
    layout: str
    data: bytes | None


def _chunk_start(res: list) -> ChunkStart | None:
    if res[0] == b"gone":
        return None
    return ChunkStart(JobStatus(res[0].decode()), int(res[1]), res[2].decode(), res[3])


def _script(script: Any, keys: list, args: list, client: Any) -> Any:
    """Call a registered script; in a pipeline by its SHA alone (redis-py's Script object asks
    Redis SCRIPT EXISTS before every pipeline it is in: a round trip each time)."""
    if isinstance(client, redis.client.Pipeline):
        return client.evalsha(script.sha, len(keys), *keys, *args)
    return script(keys=keys, args=args, client=client)


class JobStore:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.r = client
        self.settings = settings
        self.ttl = settings.job_ttl_seconds
        self._begin = client.register_script(_BEGIN)
        self._finish = client.register_script(_FINISH)
        self._cancel = client.register_script(_CANCEL)
        self._create = client.register_script(_CREATE)
        self.active = f"{settings.key_prefix}:jobs:active"

    def key(self, job_id: str, *parts: object) -> str:
        return ":".join([self.settings.key_prefix, "job", job_id, *map(str, parts)])

    @staticmethod
    def new_id() -> str:
        return str(uuid.uuid4())

    def put_inputs(self, job_id: str, chunks: list[tuple[int, bytes]]) -> None:
        """Store chunk inputs (before the record exists; they expire with the job's TTL)."""
        pipe = self.r.pipeline(transaction=False)
        for index, data in chunks:
            pipe.set(self.key(job_id, "in", index), data, ex=self.ttl)
        pipe.execute()

    def create(
        self,
        job_id: str,
        kind: str,
        owner: str,
        rows_total: int,
        chunks_total: int,
        layout: str = "",
        chunks: list[tuple[int, int]] | None = None,
        inputs: list[tuple[int, bytes]] | None = None,
        enqueue: str = "",
    ) -> None:
        """Record a new job; ``chunks`` gives each chunk's (first row, rows), ``inputs`` any
        chunk inputs not stored yet, ``enqueue`` a list to append the job id to once it is
        recorded: all in one atomic call."""
        chunks = chunks or [(1, rows_total)] * min(chunks_total, 1)
        record = {
            "kind": kind,
            "status": JobStatus.QUEUED.value,
            "owner": owner,
            "rows_total": rows_total,
            "rows_done": 0,
            "rows_failed": 0,
            "chunks_total": chunks_total,
            "created_at": now_iso(),
            "layout": layout,
        }
        meta = [f"{first} {rows}" for first, rows in chunks]
        inputs = inputs or []
        keys = [self.key(job_id), self.key(job_id, "chunks"), self.active, enqueue or self.active]
        keys += [self.key(job_id, "in", index) for index, _ in inputs]
        args: list = [self.ttl, job_id, time.time(), 1 if enqueue else 0, len(record)]
        for name, value in record.items():
            args += (name, value)
        args += [len(meta), *meta, *(data for _, data in inputs)]
        self._create(keys=keys, args=args)

    def discard(self, job_id: str, chunks_total: int) -> None:
        """Remove everything of a job that could not be enqueued."""
        keys = [self.key(job_id, "in", n) for n in range(chunks_total)]
        for suffix in ("", "done", "tries", "notify", "chunks"):
            keys.append(self.key(job_id, suffix) if suffix else self.key(job_id))
        pipe = self.r.pipeline()
        pipe.delete(*keys)
        pipe.zrem(self.active, job_id)
        pipe.execute()

    def get(self, job_id: str) -> Job | None:
        data = self.r.hgetall(self.key(job_id))
        return Job.from_hash(job_id, data) if data else None

    def get_with_output(self, job_id: str, chunk: int = 0) -> tuple[Job | None, bytes | None]:
        """The record and one chunk's output, in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.key(job_id))
        pipe.get(self.key(job_id, "out", chunk))
        data, output = pipe.execute()
        return (Job.from_hash(job_id, data) if data else None), output

    def begin_chunk(self, job_id: str, chunk: int) -> ChunkStart | None:
        """Count a delivery of ``chunk`` and mark the job running; None if the job is gone."""
        return _chunk_start(self._begin_call(job_id, chunk, self.r))

    def begin_many(self, job_ids: list[str]) -> list[ChunkStart | None]:
        """begin_chunk for chunk 0 of each job, in one round trip."""
        results = self._pipelined(lambda pipe: [self._begin_call(j, 0, pipe) for j in job_ids])
        return [_chunk_start(res) for res in results]

    def _begin_call(self, job_id: str, chunk: int, client: Any) -> Any:
        keys = [
            self.key(job_id),
            self.key(job_id, "tries"),
            self.key(job_id, "in", chunk),
            self.key(job_id, "events"),
            self.active,
        ]
        return _script(self._begin, keys, [chunk, now_iso(), job_id, time.time()], client)

    def finish_chunk(
        self,
        job_id: str,
        chunk: int,
        output: bytes,
        errors: bytes,
        rows_ok: int,
        rows_failed: int,
        model: tuple[str, str] | None = None,
        failure: str = "",
    ) -> str:
        """Store a chunk's output and count it done, once; the last chunk ends the job."""
        args = (job_id, chunk, output, errors, rows_ok, rows_failed, model, failure)
        return self._finish_call(*args, client=self.r).decode()

    def finish_many(self, finished: list[tuple]) -> list[str]:
        """finish_chunk for each (job id, chunk, output, errors, ok, failed, model, failure)."""
        results = self._pipelined(
            lambda pipe: [self._finish_call(*args, client=pipe) for args in finished]
        )
        return [res.decode() for res in results]

    def _pipelined(self, fill: Callable[[Any], object]) -> list:
        """Script calls in one pipeline (``fill`` adds them), sent again with the scripts
        loaded if Redis lost them (a restart without its data)."""
        for attempt in (1, 2):
            pipe = self.r.pipeline(transaction=False)
            fill(pipe)
            try:
                return pipe.execute()
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                for script in (self._begin, self._finish, self._cancel):
                    self.r.script_load(script.script)
        raise AssertionError("unreachable")

    def _finish_call(
        self,
        job_id: str,
        chunk: int,
        output: bytes,
        errors: bytes,
        rows_ok: int,
        rows_failed: int,
        model: tuple[str, str] | None,
        failure: str,
        client: Any,
    ) -> Any:
        keys = [
            self.key(job_id),
            self.key(job_id, "done"),
            self.key(job_id, "out", chunk),
            self.key(job_id, "err", chunk),
            self.key(job_id, "in", chunk),
            self.key(job_id, "notify"),
            self.key(job_id, "events"),
            self.active,
        ]
        name, version = model or ("", "")
        args = [chunk, output, errors, rows_ok, rows_failed, now_iso(), name, version, failure]
        args += [job_id, time.time()]
        return _script(self._finish, keys, args, client)

    def cancel(self, job_id: str) -> str:
        keys = [
            self.key(job_id),
            self.key(job_id, "notify"),
            self.key(job_id, "events"),
            self.active,
        ]
        res = self._cancel(keys=keys, args=[now_iso(), job_id])
        return res.decode()

    def wait_for_end(self, job_id: str, timeout: float, blocking: redis.Redis) -> bytes | None:
        """Block until the job's end is signalled (at once if it has ended) or ``timeout``;
        the signal, or None."""
        if timeout <= 0:
            return None  # (BLMOVE's timeout 0 would mean forever)
        notify = self.key(job_id, "notify")
        # Rotate the list onto itself rather than pop it: the signal stays for any other
        # client waiting on the same job, and the key keeps its TTL.
        return blocking.blmove(notify, notify, timeout, "LEFT", "RIGHT")

    def wait_for_answer(
        self, job_id: str, timeout: float, blocking: redis.Redis
    ) -> tuple[Job | None, bytes | None]:
        """A prediction job's record and answers once it ends (or as they are at ``timeout``):
        usually carried by the end signal itself, one round trip in all."""
        signal = self.wait_for_end(job_id, timeout, blocking)
        if signal and signal.startswith(b"["):
            fields, output = json.loads(signal)
            pairs = zip(fields[::2], fields[1::2], strict=True)
            record = {k.encode(): v.encode() for k, v in pairs}
            return Job.from_hash(job_id, record), output.encode() or None
        return self.get_with_output(job_id)  # not ended, or cancelled

    def stalled(self, idle_seconds: float, limit: int = 100) -> list[str]:
        """Unfinished jobs that have not moved for ``idle_seconds``."""
        ids = self.r.zrangebyscore(self.active, 0, time.time() - idle_seconds, start=0, num=limit)
        return [i.decode() for i in ids]

    def missing_chunks(self, job_id: str) -> tuple[Job | None, list[tuple[int, int, int]]]:
        """The job and its chunks not done yet: (chunk, first row, rows)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.key(job_id))
        pipe.smembers(self.key(job_id, "done"))
        pipe.hgetall(self.key(job_id, "chunks"))
        record, done, meta = pipe.execute()
        if not record:
            self.r.zrem(self.active, job_id)  # expired: nothing left to recover
            return None, []
        job = Job.from_hash(job_id, record)
        finished = {int(n) for n in done}
        missing = []
        for n, value in meta.items():
            if int(n) not in finished:
                first, rows = map(int, value.split())
                missing.append((int(n), first, rows))
        return job, sorted(missing)

    def touch(self, job_id: str) -> None:
        self.r.zadd(self.active, {job_id: time.time()}, xx=True)

    def iter_parts(self, job_id: str, part: str, chunks: int, batch: int = 32) -> Iterator[bytes]:
        """Each chunk's stored ``out`` or ``err`` bytes, in chunk order, a few GETs per trip."""
        for start in range(0, chunks, batch):
            keys = [self.key(job_id, part, n) for n in range(start, min(chunks, start + batch))]
            for value in self.r.mget(keys):
                if value:
                    yield value
