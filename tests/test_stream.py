"""The stream worker against a real Redis: records in, one answer each out, nothing lost."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from itertools import count

import pytest

from core.connection import connect
from tests import procs

SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]
_names = count()


@pytest.fixture()
def stream_settings(settings):
    n = next(_names)
    prefix = f"{settings.key_prefix}:s{n}"
    return dataclasses.replace(
        settings,
        stream_input=f"{prefix}:requests",
        stream_output=f"{prefix}:results",
        stream_dead=f"{prefix}:dead",
        stream_claim_idle_ms=1000,
        stream_block_ms=200,
    )


def append(r, stream: str, records: list[dict]) -> None:
    """What any producer does: XADD entries with an id and JSON features."""
    pipe = r.pipeline(transaction=False)
    for record in records:
        pipe.xadd(
            stream, {k: v if isinstance(v, str) else json.dumps(v) for k, v in record.items()}
        )
    pipe.execute()


def collect(r, stream: str, expected: int, timeout: float = 90) -> list[dict[str, str]]:
    """Read the output stream from the start until ``expected`` entries are there."""
    out: list[dict[str, str]] = []
    last = "0-0"
    deadline = time.monotonic() + timeout
    while len(out) < expected and time.monotonic() < deadline:
        got = r.xread({stream: last}, count=5000, block=200)
        for _, entries in got:
            for entry_id, fields in entries:
                last = entry_id
                out.append({k.decode(): v.decode() for k, v in fields.items()})
    return out


def test_ten_thousand_records_each_answered_once(stream_settings):
    s = stream_settings
    worker = procs.start_stream_worker(s)
    r = connect(s)
    try:
        records = [
            {"id": f"rec-{i}", "features": SETOSA if i % 2 else VIRGINICA} for i in range(10_000)
        ]
        append(r, s.stream_input, records)
        out = collect(r, s.stream_output, 10_000)
    finally:
        procs.stop(worker)
    ids = [o["id"] for o in out]
    assert len(ids) == 10_000 and set(ids) == {rec["id"] for rec in records}
    for o in out:
        result = json.loads(o["result"])
        expected = "setosa" if int(o["id"].split("-")[1]) % 2 else "virginica"
        assert result["prediction"] == expected
        assert set(result) == {"prediction", "class_id", "probabilities", "model_version"}
    assert r.xlen(s.stream_input) == 0  # acknowledged records are removed from the input
    assert r.xpending(s.stream_input, s.stream_group)["pending"] == 0


def test_records_another_consumer_group_still_needs_stay_in_the_input(stream_settings):
    s = stream_settings
    r = connect(s)
    r.xgroup_create(s.stream_input, "audit", id="0", mkstream=True)
    worker = procs.start_stream_worker(s)
    try:
        append(r, s.stream_input, [{"id": f"a{i}", "features": SETOSA} for i in range(1000)])
        assert len(collect(r, s.stream_output, 1000)) == 1000
        assert r.xlen(s.stream_input) == 1000  # the audit group has read none of them
        read = r.xreadgroup("audit", "me", {s.stream_input: ">"}, count=400)[0][1]
        r.xack(s.stream_input, "audit", *[entry_id for entry_id, _ in read])
        append(r, s.stream_input, [{"id": f"b{i}", "features": SETOSA} for i in range(10)])
        assert len(collect(r, s.stream_output, 1010)) == 1010
    finally:
        procs.stop(worker)
    assert r.xlen(s.stream_input) == 610  # trimmed only past what both groups answered
    first = r.xrange(s.stream_input, count=1)[0]
    assert first[1][b"id"] == b"a400"


def test_bad_records_come_back_with_an_error(stream_settings):
    s = stream_settings
    worker = procs.start_stream_worker(s)
    r = connect(s)
    try:
        named = dict(
            zip(["sepal_length", "sepal_width", "petal_length", "petal_width"], SETOSA, strict=True)
        )
        append(r, s.stream_input, [
            {"id": "ok-list", "features": SETOSA},
            {"id": "ok-named", "features": named},
            {"id": "short", "features": [1, 2, 3]},
            {"id": "word", "features": [1, "x", 3, 4]},
            {"id": "nan", "features": "[1, NaN, 3, 4]"},
            {"id": "not-json", "features": "[1, 2"},
            {"id": "none"},
            {"id": "two-arrays", "features": "[5.1, 3.5], [1.4, 0.2]"},
            {"id": "huge-int", "features": "[1" + "0" * 400 + ", 3.5, 1.4, 0.2]"},
            {"id": "overflow", "features": "[1e999, 3.5, 1.4, 0.2]"},
        ])  # fmt: skip
        out = {o["id"]: o for o in collect(r, s.stream_output, 10)}
    finally:
        procs.stop(worker)
    assert json.loads(out["ok-list"]["result"])["prediction"] == "setosa"
    assert json.loads(out["ok-named"]["result"])["class_id"] == 0
    assert "has 3 values" in out["short"]["error"]
    assert "not a number" in out["word"]["error"]
    assert "NaN" in out["nan"]["error"]
    assert "not valid JSON" in out["not-json"]["error"]
    assert "no 'features'" in out["none"]["error"]
    assert "not valid JSON" in out["two-arrays"]["error"]
    assert "infinite" in out["huge-int"]["error"] and "infinite" in out["overflow"]["error"]
    bad = ("short", "word", "nan", "not-json", "none", "two-arrays", "huge-int", "overflow")
    assert all("result" not in out[k] for k in bad)


def test_records_pending_on_a_killed_consumer_are_claimed_and_scored(stream_settings):
    s = stream_settings
    r = connect(s)
    total = 0
    doomed = procs.start_stream_worker(s)
    pending_at_kill = 0
    try:
        for attempt in range(30):  # bounded: freeze the consumer while it holds records
            batch = [{"id": f"k-{total + i}", "features": SETOSA} for i in range(3000)]
            total += len(batch)
            append(r, s.stream_input, batch)
            time.sleep(0.002 * attempt)
            os.killpg(doomed.pid, signal.SIGSTOP)
            pending_at_kill = r.xpending(s.stream_input, s.stream_group)["pending"]
            if pending_at_kill:
                break
            os.killpg(doomed.pid, signal.SIGCONT)
        assert pending_at_kill, "never caught the consumer holding records"
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait()
        rescuer = procs.start_stream_worker(s)
        try:
            out = collect(r, s.stream_output, total)
        finally:
            procs.stop(rescuer)
    finally:
        procs.stop(doomed, signal.SIGKILL)
    ids = [o["id"] for o in out]
    assert len(ids) == total, f"{total - len(ids)} records lost ({pending_at_kill} were pending)"
    assert len(set(ids)) == total  # and none answered twice
    assert r.xpending(s.stream_input, s.stream_group)["pending"] == 0


def test_a_poison_record_goes_to_the_dead_letter_stream(stream_settings):
    s = stream_settings
    r = connect(s)
    r.xgroup_create(s.stream_input, s.stream_group, id="0", mkstream=True)
    append(r, s.stream_input, [{"id": "poison", "features": SETOSA}])
    # Consumers that took the record and died without an answer, as many times as allowed:
    # one read it, the next ones claimed it from the one before.
    entry = r.xreadgroup(s.stream_group, "doomed-1", {s.stream_input: ">"}, count=1)[0][1][0][0]
    for n in range(2, s.stream_max_deliveries + 1):
        r.xclaim(s.stream_input, s.stream_group, f"doomed-{n}", 0, [entry])
    time.sleep(s.stream_claim_idle_ms / 1000 + 0.1)
    worker = procs.start_stream_worker(s)
    try:
        dead = collect(r, s.stream_dead, 1, timeout=30)
    finally:
        procs.stop(worker)
    assert [d["id"] for d in dead] == ["poison"]
    assert f"delivered {s.stream_max_deliveries + 1} times" in dead[0]["error"]
    assert json.loads(dead[0]["features"]) == SETOSA
    assert r.xlen(s.stream_output) == 0  # no answer, and no loop
    assert r.xpending(s.stream_input, s.stream_group)["pending"] == 0


def test_plain_records_are_read_at_once_and_anything_else_one_by_one():
    from worker.stream import plain_rows

    plain = [{b"features": b"[5.1, 3.5, 1.4, 0.2]"}, {b"features": b"[6,3,5.2,-2.3e0]"}]
    assert plain_rows(plain, 4).tolist() == [[5.1, 3.5, 1.4, 0.2], [6, 3, 5.2, -2.3]]
    for odd in [b"[1, 2, 3]", b"[5.1, 3.5], [1.4, 0.2]", b"[1e999, 1, 1, 1]", b"[true, 1, 1, 1]",
                b'{"a": 1}', b"[[1, 2, 3, 4]]", b"[1, 2, 3, 4", b""]:  # fmt: skip
        assert plain_rows([*plain, {b"features": odd}], 4) is None, odd
    assert plain_rows([{b"id": b"no features"}], 4) is None


def test_result_text_is_what_json_dumps_writes():
    import numpy as np

    from worker.scoring import as_json, result_texts

    rng = np.random.default_rng(3)
    probabilities = rng.dirichlet([0.2] * 3, size=2000)
    probabilities[:3] = [[1, 0, 0], [1e-7, 0.5 - 1e-7, 0.5], [0.2529125, 0.5, 0.2470875]]
    ids = probabilities.argmax(axis=1)
    names = ["setosa", 'a "quoted" 100% name', "virginica"]
    expected = [
        json.dumps({**answer, "model_version": "v%s"})
        for answer in as_json(names, ids, probabilities)
    ]
    assert result_texts(names, "v%s", ids, probabilities) == expected
