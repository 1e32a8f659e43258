"""The predict lane: prediction jobs waiting for a worker, on a plain Redis list.

A prediction request records its job and appends the job id here in one round trip; worker
processes take what is waiting in batches (micro-batching happens where the model is) and score
each batch in one vectorised call (worker/predictions.py). A Celery message costs more to send
and receive than a prediction costs to score, so predictions do not ride on Celery; CSV chunks
still do. A batch a worker took and never finished (its process died) is found by the sweeper
like a lost Celery message: its jobs are still in the active-jobs index, and go back here.
"""

from __future__ import annotations

import hashlib
from typing import Any

import redis

from core.settings import Settings

#: Take up to ARGV[1] ids off the head of the list KEYS[1], in one call.
_TAKE = """
local ids = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #ids > 0 then redis.call('LTRIM', KEYS[1], #ids, -1) end
return ids
"""
_TAKE_SHA = hashlib.sha1(_TAKE.encode()).hexdigest()


class PredictLane:
    def __init__(self, settings: Settings) -> None:
        self.key = f"{settings.key_prefix}:predict:lane"

    def push(self, client: Any, *job_ids: str) -> None:
        """Append job ids (``client`` may be a pipeline, to go with the job records)."""
        client.rpush(self.key, *job_ids)

    def take(self, r: redis.Redis, most: int, block_seconds: float) -> list[str]:
        """Up to ``most`` job ids: whatever is waiting, else the first to arrive within
        ``block_seconds`` and whatever came with it. ``r`` needs a read timeout longer than
        the block."""
        waiting = self.take_waiting(r, most)
        if waiting:
            return waiting
        first = r.blpop([self.key], timeout=block_seconds)
        if first is None:
            return []
        return [first[1].decode(), *self.take_waiting(r, most - 1)]

    def take_waiting(self, r: redis.Redis, most: int) -> list[str]:
        """Up to ``most`` job ids that are waiting now, without blocking."""
        if most <= 0:
            return []
        try:
            ids = r.evalsha(_TAKE_SHA, 1, self.key, most)
        except redis.exceptions.NoScriptError:  # a Redis that has not seen it (or restarted)
            r.script_load(_TAKE)
            ids = r.evalsha(_TAKE_SHA, 1, self.key, most)
        return [job_id.decode() for job_id in ids]
