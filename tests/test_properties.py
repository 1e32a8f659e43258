"""Property tests of the CSV reader and chunker: whatever the file, every data row ends in the
result or the errors exactly once, in order, with its own values; and the fast (pyarrow) way of
parsing and writing a chunk writes the same bytes as the csv module's way whenever it takes it."""

from __future__ import annotations

import csv
import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import arrowcsv, csvio

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]

numbers = st.floats(allow_nan=True, allow_infinity=True).map(repr) | st.integers().map(str)
junk = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))
cell = numbers | junk | st.sampled_from(["", " ", "nan", "-inf", "1e999", '"', "a,b", "x\ny", "\r"])
row = st.lists(cell, min_size=4, max_size=6)
#: Cells of plain exports (no quotes, line breaks or commas inside), which the API splits
#: without parsing and the worker parses with pyarrow.
plain_junk = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters='\x00",\r\n')
)
plain_cell = numbers | plain_junk | st.sampled_from(["", " ", "nan", " 5.1 ", "-3", "=1+1", "1_0"])
plain_row = st.lists(plain_cell, min_size=4, max_size=6)
CLASSES = ["setosa", "versi,color", "virginica"]


def reference_rows(data: bytes) -> list[list[str]]:
    """The rows as Python's csv module reads the file (opened with newline=""), blanks skipped."""
    text = data.decode("utf-8-sig")
    return [r for r in csv.reader(io.StringIO(text, newline="")) if any(f.strip() for f in r)]


def same_bytes_both_ways(chunk: csvio.Chunk, layout: csvio.Layout, seed: int) -> bool:
    """Score the chunk with made-up probabilities both ways; True when the fast way took it."""
    parsed = csvio.parse_chunk(chunk.data, layout, FEATURES, chunk.first_row)
    fast = arrowcsv.parse(chunk.data, layout, chunk.rows)
    if fast is None:
        return False
    assert not parsed.errors and fast.features.tolist() == parsed.features.tolist()
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet([0.3] * len(CLASSES), size=chunk.rows)
    probabilities[rng.random(chunk.rows) < 0.2, :] = [0.0, 0.0000005, 0.9999995]
    ids = probabilities.argmax(axis=1)
    written = arrowcsv.format_scored(fast, layout, CLASSES, ids, probabilities)
    if written is None:
        return False
    assert written == csvio.format_scored(parsed, layout, CLASSES, ids, probabilities)
    return True


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(row, min_size=1, max_size=60) | st.lists(plain_row, min_size=1, max_size=60),
    chunk_rows=st.integers(1, 25),
    line_end=st.sampled_from(["\n", "\r\n"]),
    header_order=st.permutations(FEATURES),
    bom=st.booleans(),
    read_block=st.integers(1, 200),
    chunk_bytes=st.integers(1, 400),
)
def test_every_row_is_scored_or_an_error_exactly_once(
    rows, chunk_rows, line_end, header_order, bom, read_block, chunk_bytes
):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=line_end)
    writer.writerow(["id", *header_order])
    for n, values in enumerate(rows, 1):
        writer.writerow([f"row-{n}", *values])
    data = ("\ufeff" if bom else "").encode() + out.getvalue().encode("utf-8")
    expected = reference_rows(data)[1:]  # the data rows, as any CSV reader sees this file

    layout, chunks = csvio.split_upload(
        io.BytesIO(data),
        FEATURES,
        chunk_rows,
        10_000,
        read_block=read_block,
        chunk_bytes=chunk_bytes,
    )
    outcome: dict[int, list[str] | str] = {}
    next_row = 1
    for chunk in chunks:
        assert chunk.first_row == next_row and 1 <= chunk.rows <= chunk_rows
        assert len(chunk.data) <= chunk_bytes or chunk.rows == 1
        next_row += chunk.rows
        parsed = csvio.parse_chunk(chunk.data, layout, FEATURES, chunk.first_row)
        errors = dict(parsed.errors)
        kept = iter(zip(parsed.kept, parsed.features, strict=True))
        for number in range(chunk.first_row, chunk.first_row + chunk.rows):
            assert number not in outcome  # exactly once
            if number in errors:
                outcome[number] = errors[number]
                continue
            fields, values = next(kept)
            outcome[number] = fields
            by_name = dict(zip(["id", *header_order], fields, strict=True))
            assert [float(by_name[f]) for f in FEATURES] == values.tolist()
        assert next(kept, None) is None
        same_bytes_both_ways(chunk, layout, chunk.index)
    assert sorted(outcome) == list(range(1, len(expected) + 1))
    for number, fields in outcome.items():
        if isinstance(fields, list):  # a scored row carries exactly the file's own fields
            assert fields == expected[number - 1]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(plain_row, min_size=1, max_size=40),
    good=st.lists(st.tuples(st.integers(0, 10**6), st.lists(numbers, min_size=4, max_size=4))),
    chunk_rows=st.integers(1, 25),
    line_end=st.sampled_from(["\\n", "\\r\\n"]),
)
def test_the_fast_way_takes_plain_chunks_and_writes_what_the_csv_module_writes(
    rows, good, chunk_rows, line_end
):
    lines = [f"id{n}," + ",".join(v) for n, v in good] + [",".join(r) for r in rows]
    data = (",".join(["id", *FEATURES]) + line_end + line_end.join(lines) + line_end).encode()
    try:
        layout, chunks = csvio.split_upload(io.BytesIO(data), FEATURES, chunk_rows, 10_000)
        chunks = list(chunks)
    except Exception:  # a made-up file csvio refuses as a whole (e.g. a blank header cell)
        return
    for chunk in chunks:
        same_bytes_both_ways(chunk, layout, chunk.index)
