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
cell = numbers | junk | st.sampled_from(["", " ", "nan", "-inf", "1e999", '"', "a,b", "x\ny"])
row = st.lists(cell, min_size=4, max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(row, min_size=1, max_size=60),
    chunk_rows=st.integers(1, 25),
    crlf=st.booleans(),
    header_order=st.permutations(FEATURES),
)
def test_every_row_is_scored_or_an_error_exactly_once(rows, chunk_rows, crlf, header_order):
    header = ["id", *header_order]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(header)
    ids = []
    for n, values in enumerate(rows, 1):
        ids.append(f"row-{n}")
        writer.writerow([f"row-{n}", *values])
    data = out.getvalue().encode("utf-8")

    layout, chunks = csvio.split_upload(io.BytesIO(data), FEATURES, chunk_rows, 10_000)
    seen: list[int] = []
    kept_ids: list[str] = []
    expected_first = 1
    for chunk in chunks:
        assert chunk.first_row == expected_first and chunk.rows <= chunk_rows
        expected_first += chunk.rows
        parsed = csvio.parse_chunk(chunk.data, layout, FEATURES, chunk.first_row)
        kept_rows = [chunk.first_row + i for i in range(chunk.rows)]
        errors = {r for r, _ in parsed.errors}
        kept_here = [r for r in kept_rows if r not in errors]
        assert len(kept_here) == len(parsed.kept) == len(parsed.features)
        seen.extend(sorted(errors | set(kept_here)))
        kept_ids.extend(fields[0] for fields in parsed.kept)
        for fields, values in zip(parsed.kept, parsed.features, strict=True):
            original = rows[ids.index(fields[0])]
            # the features come from their named columns, whatever the header order
            by_name = dict(zip(header_order, original, strict=False))
            assert [float(by_name[f]) for f in FEATURES] == values.tolist()
    # Rows whose id cell survived whole are found again by id; every row number exactly once.
    assert seen == list(range(1, len(rows) + 1))
    assert kept_ids == [i for i in ids if i in set(kept_ids)]
