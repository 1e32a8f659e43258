"""The predict lane: prediction jobs waiting for a worker, on a plain Redis list; and the reply
lists their answers come back on.

The API records prediction jobs and appends their ids here in one round trip (several jobs at
a time, api/gate.py); worker processes take what is waiting in batches (micro-batching happens
where the model is) and score each batch in one vectorised call (worker/predictions.py). A
Celery message costs more to send and receive than a prediction costs to score, so predictions
do not ride on Celery; CSV chunks still do. A batch a worker took and never finished (its
process died) is found by the sweeper like a lost Celery message: its jobs are still in the
active-jobs index, and go back here.

Each API process has a reply list of its own, named in the records of the jobs it waits for:
the script that ends such a job pushes the job's end there (core/jobs.py), and the API process
reads them many at a time.
"""

from __future__ import annotations

import hashlib
from typing import Any

import redis

from core.settings import Settings

#: Take up to ARGV[1] entries off the head of the list KEYS[1], in one call.
_TAKE = """
local ids = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #ids > 0 then redis.call('LTRIM', KEYS[1], #ids, -1) end
return ids
"""
_TAKE_SHA = hashlib.sha1(_TAKE.encode()).hexdigest()


def take(r: redis.Redis, key: str, most: int, block_seconds: float) -> list[bytes]:
    """Up to ``most`` entries off the head of the list ``key``: whatever is waiting, else the
    first to arrive within ``block_seconds`` and whatever came with it. ``r`` needs a read
    timeout longer than the block."""
    waiting = take_waiting(r, key, most)
    if waiting:
        return waiting
    first = r.blpop([key], timeout=block_seconds)
    if first is None:
        return []
    return [first[1], *take_waiting(r, key, most - 1)]


def take_waiting(r: redis.Redis, key: str, most: int) -> list[bytes]:
    """Up to ``most`` entries waiting on the list ``key`` now, without blocking."""
    if most <= 0:
        return []
    try:
        return r.evalsha(_TAKE_SHA, 1, key, most)
    except redis.exceptions.NoScriptError:  # a Redis that has not seen it (or restarted)
        r.script_load(_TAKE)
        return r.evalsha(_TAKE_SHA, 1, key, most)


class PredictLane:
    def __init__(self, settings: Settings) -> None:
        self.key = f"{settings.key_prefix}:predict:lane"
        self._replies = f"{settings.key_prefix}:predict:reply:"

    def reply_key(self, token: str) -> str:
        """The reply list of one API process."""
        return self._replies + token

    def push(self, client: Any, *job_ids: str) -> None:
        """Append job ids (``client`` may be a pipeline, to go with the job records)."""
        client.rpush(self.key, *job_ids)

    def take(self, r: redis.Redis, most: int, block_seconds: float) -> list[str]:
        """Up to ``most`` job ids (see :func:`take`)."""
        return [job_id.decode() for job_id in take(r, self.key, most, block_seconds)]

    def take_waiting(self, r: redis.Redis, most: int) -> list[str]:
        """Up to ``most`` job ids that are waiting now, without blocking."""
        return [job_id.decode() for job_id in take_waiting(r, self.key, most)]
