"""Pipe newline-delimited JSON records through the Redis stream: stdin in, results out."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable
from typing import TextIO

import redis

from cli.client import CliError

#: Records appended per round trip.
BATCH = 1000


def _record(line: str, number: int) -> tuple[str, str]:
    """(id, features JSON) from one input line: {"id": .., "features": ..} or a bare array."""
    try:
        value = json.loads(line)
    except ValueError:
        raise CliError(f"line {number} is not JSON: {line[:60]!r}") from None
    if isinstance(value, dict) and "features" in value:
        return str(value.get("id", number)), json.dumps(value["features"])
    if isinstance(value, list | dict):
        return str(number), json.dumps(value)
    raise CliError(f"line {number}: expected an object with 'features', or an array of numbers")


def pipe(
    r: redis.Redis,
    lines: Iterable[str],
    out: TextIO,
    input_stream: str,
    output_stream: str,
    timeout: float,
) -> int:
    """Append every record, print each answer as it arrives; the number left unanswered."""
    newest = r.xrevrange(output_stream, count=1)
    cursor = newest[0][0] if newest else b"0-0"
    waiting: Counter[str] = Counter()

    def drain(block_ms: int | None) -> bool:
        nonlocal cursor
        got = r.xread({output_stream: cursor}, count=5000, block=block_ms)
        for _, entries in got or []:
            for entry_id, fields in entries:
                cursor = entry_id
                record_id = fields.get(b"id", b"").decode()
                if waiting[record_id] <= 0:
                    continue  # someone else's record
                waiting[record_id] -= 1
                answer: dict = {"id": record_id}
                if b"result" in fields:
                    answer["result"] = json.loads(fields[b"result"])
                else:
                    answer["error"] = fields.get(b"error", b"").decode()
                out.write(json.dumps(answer) + "\n")
        out.flush()
        return bool(got)

    batch: list[tuple[str, str]] = []
    number = 0
    for line in lines:
        if not line.strip():
            continue
        number += 1
        batch.append(_record(line, number))
        if len(batch) >= BATCH:
            _append(r, input_stream, batch, waiting)
            batch = []
            drain(None)
    _append(r, input_stream, batch, waiting)
    deadline = time.monotonic() + timeout
    while +waiting and time.monotonic() < deadline:
        if drain(200):
            deadline = time.monotonic() + timeout  # still moving
    return sum((+waiting).values())


def _append(r: redis.Redis, stream: str, batch: list[tuple[str, str]], waiting: Counter) -> None:
    if not batch:
        return
    p = r.pipeline(transaction=False)
    for record_id, features in batch:
        p.xadd(stream, {"id": record_id, "features": features})
        waiting[record_id] += 1
    p.execute()
