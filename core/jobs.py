"""Jobs are the service's own records in Redis, not Celery results.

Keys, all under ``<prefix>:job:<id>`` and all expiring with the job:
  (hash)        the record: kind, status, owner, counters, timestamps, model, error, layout
  :in:<n>       a chunk's input rows, deleted once the chunk is done
  :out:<n>      a chunk's scored rows (CSV, or JSON for a prediction job)
  :err:<n>      a chunk's "row,error" lines
  :done         set of finished chunk numbers: a chunk counts once however often it runs
  :tries        hash chunk -> deliveries, for the redelivery cap
  :events       a pub/sub channel told each time the job moves, for live event streams
  :chunks       hash chunk -> "first_row rows", so a lost chunk can be sent again
and ``<prefix>:jobs:active``, a sorted set of unfinished jobs by the time they last moved, which
the sweeper (worker/sweeper.py) reads to find jobs whose task messages were lost.
A prediction job whose caller waits names in its record (``reply_to``) the reply list of the
API process waiting (core/lane.py); the script that ends the job pushes its end there as JSON,
[job id, the record's fields, the answers], so the waiter needs no other round trip.
Each transition is one Lua script, so it is atomic and one round trip.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

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


# Start chunks (each one delivery): count the delivery, mark the job running, read the input.
# KEYS: active, then per chunk: job, tries, in, events.
# ARGV: now, now (epoch seconds), then per chunk: chunk, job id.
# -> per chunk {status, deliveries, layout, input, reply list} or {'gone'}
_BEGIN = """
local function begin(k, a)
  local job, tries, input, events = unpack(KEYS, k, k + 3)
  local chunk, job_id = unpack(ARGV, a, a + 1)
  if redis.call('EXISTS', job) == 0 then return {'gone'} end
  local deliveries = redis.call('HINCRBY', tries, chunk, 1)
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], job_id)
  redis.call('PEXPIRE', tries, redis.call('PTTL', job))
  local status, layout, reply = unpack(redis.call('HMGET', job, 'status', 'layout', 'reply_to'))
  if status == 'queued' then
    status = 'running'
    redis.call('HSET', job, 'status', status, 'started_at', ARGV[1])
    redis.call('PUBLISH', events, status)
  end
  return {status, deliveries, layout or '', redis.call('GET', input) or false, reply or ''}
end
local started = {}
for i = 0, (#KEYS - 1) / 4 - 1 do started[#started + 1] = begin(2 + 4 * i, 3 + 2 * i) end
return started
"""

# Finish chunks: store the output, count the chunk once; the last chunk ends the job (and a
# prediction's end goes to the reply list its record names).
# KEYS: active, then per chunk: job, done, out, err, in, reply list (any other key if none),
#       events.
# ARGV: now, now (epoch seconds), then per chunk: chunk, out, err, rows ok, rows failed,
#       model name, model version, chunk failure, job id.
# -> per chunk 'gone' | 'duplicate' | 'counted' | the job's final status if it was the last.
_FINISH = """
local function finish(k, a)
  local job, done, out, err, input, reply, events = unpack(KEYS, k, k + 6)
  local chunk, output, errors, ok, failed, name, version, failure, job_id = unpack(ARGV, a, a + 8)
  if redis.call('EXISTS', job) == 0 then return 'gone' end
  if redis.call('SADD', done, chunk) == 0 then return 'duplicate' end
  local ttl = redis.call('PTTL', job)
  redis.call('PEXPIRE', done, ttl)
  if output ~= '' then redis.call('SET', out, output, 'PX', ttl) end
  if errors ~= '' then redis.call('SET', err, errors, 'PX', ttl) end
  redis.call('DEL', input)
  redis.call('HINCRBY', job, 'rows_done', ok)
  redis.call('HINCRBY', job, 'rows_failed', failed)
  if name ~= '' then redis.call('HSET', job, 'model_name', name, 'model_version', version) end
  if failure ~= '' then redis.call('HSET', job, 'error', failure) end
  if redis.call('SCARD', done) < tonumber(redis.call('HGET', job, 'chunks_total')) then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], job_id)
    redis.call('PUBLISH', events, 'progress')
    return 'counted'
  end
  local status = redis.call('HGET', job, 'status')
  if status == 'queued' or status == 'running' then
    status = 'succeeded'
    if redis.call('HEXISTS', job, 'error') == 1 then status = 'failed' end
    redis.call('HSET', job, 'status', status, 'finished_at', ARGV[1])
    if redis.call('HGET', job, 'reply_to') == reply then
      redis.call('RPUSH', reply, cjson.encode({job_id, redis.call('HGETALL', job), output}))
      redis.call('PEXPIRE', reply, REPLY_TTL_MS)
    end
  end
  redis.call('ZREM', KEYS[1], job_id)
  redis.call('PUBLISH', events, status)
  return status
end
local outcomes = {}
for i = 0, (#KEYS - 1) / 7 - 1 do outcomes[#outcomes + 1] = finish(2 + 7 * i, 3 + 9 * i) end
return outcomes
"""

# KEYS: job, chunks, active, then one key per input.
# ARGV: ttl, job id, now (epoch), n, n (field, value) pairs of the record,
#       m, each chunk's "first_row rows" (m of them), then each input's data.
_CREATE = """
local ttl, job_id = tonumber(ARGV[1]), ARGV[2]
local n = tonumber(ARGV[4])
local record = {}
for i = 5, 4 + 2 * n do record[#record + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(record))
redis.call('EXPIRE', KEYS[1], ttl)
local at = 5 + 2 * n
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
for k = 4, #KEYS do
  redis.call('SET', KEYS[k], ARGV[at], 'EX', ttl)
  at = at + 1
end
return 1
"""

# Prediction jobs, each one chunk of JSON input, recorded and put on the predict lane together.
# KEYS: active, lane, then per job: job, chunks, in.
# ARGV: ttl, now (epoch), now, then per job: job id, owner, rows, input, reply list or ''.
_CREATE_PREDICTIONS = """
local ttl = tonumber(ARGV[1])
local ids = {}
for j = 0, (#KEYS - 2) / 3 - 1 do
  local k, a = 3 + 3 * j, 4 + 5 * j
  local job_id, rows = ARGV[a], ARGV[a + 2]
  redis.call('HSET', KEYS[k], 'kind', 'predict', 'status', 'queued', 'owner', ARGV[a + 1],
             'rows_total', rows, 'rows_done', 0, 'rows_failed', 0, 'chunks_total', 1,
             'created_at', ARGV[3], 'layout', '')
  if ARGV[a + 4] ~= '' then redis.call('HSET', KEYS[k], 'reply_to', ARGV[a + 4]) end
  redis.call('EXPIRE', KEYS[k], ttl)
  redis.call('HSET', KEYS[k + 1], 0, '1 ' .. rows)
  redis.call('EXPIRE', KEYS[k + 1], ttl)
  redis.call('SET', KEYS[k + 2], ARGV[a + 3], 'EX', ttl)
  redis.call('ZADD', KEYS[1], ARGV[2], job_id)
  ids[#ids + 1] = job_id
end
redis.call('RPUSH', KEYS[2], unpack(ids))
return #ids
"""

# KEYS: job, reply list (any other key if none), events, active.  ARGV: now, job id.
# -> the status after, or 'gone'.
_CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'gone' end
if status == 'queued' or status == 'running' then
  status = 'cancelled'
  redis.call('HSET', KEYS[1], 'status', status, 'finished_at', ARGV[1])
  if redis.call('HGET', KEYS[1], 'reply_to') == KEYS[2] then
    redis.call('RPUSH', KEYS[2], cjson.encode({ARGV[2], redis.call('HGETALL', KEYS[1]), ''}))
    redis.call('PEXPIRE', KEYS[2], REPLY_TTL_MS)
  end
  redis.call('PUBLISH', KEYS[3], status)
end
redis.call('ZREM', KEYS[4], ARGV[2])
return status
"""


#: How long a reply list outlives its last push: an API process drains its own all the time, so
#: this only bounds what is left of one that stopped.
REPLY_TTL_MS = 60_000
_FINISH = _FINISH.replace("REPLY_TTL_MS", str(REPLY_TTL_MS))
_CANCEL = _CANCEL.replace("REPLY_TTL_MS", str(REPLY_TTL_MS))


@dataclass(frozen=True)
class ChunkStart:
    status: JobStatus
    deliveries: int
    layout: str
    data: bytes | None
    reply_to: str = ""  # the reply list of the API process waiting for this prediction


def _chunk_start(res: list) -> ChunkStart | None:
    if res[0] == b"gone":
        return None
    status, deliveries, layout, data, reply_to = res
    return ChunkStart(
        JobStatus(status.decode()), int(deliveries), layout.decode(), data, reply_to.decode()
    )


@dataclass(frozen=True)
class NewPrediction:
    """A prediction job to record: its input is one chunk, JSON {"instances": [...]}."""

    job_id: str
    owner: str
    rows: int
    data: bytes
    reply_to: str = ""  # the reply list to push its end onto, if a caller waits


def parse_reply(entry: bytes) -> tuple[str, Job, bytes | None]:
    """An entry of a reply list: (job id, the job's record when it ended, its answers)."""
    job_id, fields, output = json.loads(entry)
    record = {k.encode(): v.encode() for k, v in zip(fields[::2], fields[1::2], strict=True)}
    return job_id, Job.from_hash(job_id, record), output.encode() or None


class JobStore:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.r = client
        self.settings = settings
        self.ttl = settings.job_ttl_seconds
        self._begin = client.register_script(_BEGIN)
        self._finish = client.register_script(_FINISH)
        self._cancel = client.register_script(_CANCEL)
        self._create = client.register_script(_CREATE)
        self._create_predictions = client.register_script(_CREATE_PREDICTIONS)
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
    ) -> None:
        """Record a new job; ``chunks`` gives each chunk's (first row, rows), ``inputs`` any
        chunk inputs not stored yet: all in one atomic call."""
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
        keys = [self.key(job_id), self.key(job_id, "chunks"), self.active]
        keys += [self.key(job_id, "in", index) for index, _ in inputs]
        args: list = [self.ttl, job_id, time.time(), len(record)]
        for name, value in record.items():
            args += (name, value)
        args += [len(meta), *meta, *(data for _, data in inputs)]
        self._create(keys=keys, args=args)

    def create_predictions(self, jobs: list[NewPrediction], lane: str) -> None:
        """Record prediction jobs and append them to the list ``lane``, in one atomic call."""
        keys = [self.active, lane]
        args: list = [self.ttl, time.time(), now_iso()]
        for job in jobs:
            keys += (self.key(job.job_id), self.key(job.job_id, "chunks"))
            keys.append(self.key(job.job_id, "in", 0))
            args += (job.job_id, job.owner, job.rows, job.data, job.reply_to)
        self._create_predictions(keys=keys, args=args)

    def discard(self, job_id: str, chunks_total: int) -> None:
        """Remove everything of a job that could not be enqueued."""
        keys = [self.key(job_id, "in", n) for n in range(chunks_total)]
        for suffix in ("", "done", "tries", "chunks"):
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
        return self._begin_all([(job_id, chunk)])[0]

    def begin_many(self, job_ids: list[str]) -> list[ChunkStart | None]:
        """begin_chunk for chunk 0 of each job, in one call."""
        return self._begin_all([(job_id, 0) for job_id in job_ids])

    def _begin_all(self, chunks: list[tuple[str, int]]) -> list[ChunkStart | None]:
        keys, args = [self.active], [now_iso(), time.time()]
        for job_id, chunk in chunks:
            keys += (self.key(job_id), self.key(job_id, "tries"), self.key(job_id, "in", chunk))
            keys.append(self.key(job_id, "events"))
            args += (chunk, job_id)
        return [_chunk_start(res) for res in self._begin(keys=keys, args=args)]

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
        reply_to: str = "",
    ) -> str:
        """Store a chunk's output and count it done, once; the last chunk ends the job (and
        tells ``reply_to``, the reply list its record names, if it has one)."""
        args = (job_id, chunk, output, errors, rows_ok, rows_failed, model, failure, reply_to)
        return self.finish_many([args])[0]

    def finish_many(self, finished: list[tuple]) -> list[str]:
        """finish_chunk for each (job id, chunk, output, errors, ok, failed, model, failure,
        reply_to), in one call."""
        keys, args = [self.active], [now_iso(), time.time()]
        for job_id, chunk, output, errors, ok, failed, model, failure, reply_to in finished:
            keys += (self.key(job_id), self.key(job_id, "done"), self.key(job_id, "out", chunk))
            keys += (self.key(job_id, "err", chunk), self.key(job_id, "in", chunk))
            keys += (reply_to or self.active, self.key(job_id, "events"))
            name, version = model or ("", "")
            args += (chunk, output, errors, ok, failed, name, version, failure, job_id)
        return [res.decode() for res in self._finish(keys=keys, args=args)]

    def cancel(self, job_id: str) -> str:
        reply_to = self.r.hget(self.key(job_id), "reply_to")  # (a caller may wait on it)
        keys = [
            self.key(job_id),
            reply_to.decode() if reply_to else self.active,
            self.key(job_id, "events"),
            self.active,
        ]
        res = self._cancel(keys=keys, args=[now_iso(), job_id])
        return res.decode()

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
