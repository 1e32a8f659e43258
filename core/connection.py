"""Redis clients with timeouts, so an unreachable Redis is an error in seconds, never a hang."""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from core.settings import Settings

#: What redis-py and kombu raise when Redis cannot be reached or does not answer.
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)


def connect(
    settings: Settings, read_timeout: float | None = None, single: bool = False
) -> redis.Redis:
    """A client for ``settings.redis_url``; ``read_timeout`` for clients that block on purpose;
    ``single`` for one loop's own client: one connection, no pool to check it out of (which
    also polls the socket before each command)."""
    return redis.Redis.from_url(
        settings.redis_url,
        single_connection_client=single,
        socket_connect_timeout=settings.redis_timeout,
        socket_timeout=read_timeout if read_timeout is not None else settings.redis_timeout * 2,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=1),
    )
