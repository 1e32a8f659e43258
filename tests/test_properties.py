"""Property tests of the CSV reader and chunker: whatever the file, every data row ends in the
result or the errors exactly once, in order, with its own values."""

from __future__ import annotations

import csv
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import csvio

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]

numbers = st.floats(allow_nan=True, allow_infinity=True).map(repr) | st.integers().map(str)
junk = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))
cell = numbers | junk | st.sampled_from(["", " ", "nan", "-inf", "1e999", '"', "a,b", "x\ny", "\r"])
row = st.lists(cell, min_size=4, max_size=6)


def reference_rows(data: bytes) -> list[list[str]]:
    """The rows as Python's csv module reads the file (opened with newline=""), blanks skipped."""
    text = data.decode("utf-8-sig")
    return [r for r in csv.reader(io.StringIO(text, newline="")) if any(f.strip() for f in r)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(row, min_size=1, max_size=60),
    chunk_rows=st.integers(1, 25),
    line_end=st.sampled_from(["\n", "\r\n"]),
    header_order=st.permutations(FEATURES),
    bom=st.booleans(),
)
def test_every_row_is_scored_or_an_error_exactly_once(
    rows, chunk_rows, line_end, header_order, bom
):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=line_end)
    writer.writerow(["id", *header_order])
    for n, values in enumerate(rows, 1):
        writer.writerow([f"row-{n}", *values])
    data = ("\ufeff" if bom else "").encode() + out.getvalue().encode("utf-8")
    expected = reference_rows(data)[1:]  # the data rows, as any CSV reader sees this file

    layout, chunks = csvio.split_upload(io.BytesIO(data), FEATURES, chunk_rows, 10_000)
    outcome: dict[int, list[str] | str] = {}
    next_row = 1
    for chunk in chunks:
        assert chunk.first_row == next_row and 1 <= chunk.rows <= chunk_rows
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
    assert sorted(outcome) == list(range(1, len(expected) + 1))
    for number, fields in outcome.items():
        if isinstance(fields, list):  # a scored row carries exactly the file's own fields
            assert fields == expected[number - 1]
