"""The fast way of reading and writing chunks: plain exports are split without parsing and
scored with pyarrow; anything else falls back to the csv module, with the same bytes out."""

from __future__ import annotations

import io

import numpy as np

from core import arrowcsv, csvio

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CLASSES = ["setosa", "versicolor", "virginica"]


def split(data: bytes, chunk_rows: int = 3, read_block: int = csvio.READ_BLOCK):
    layout, chunks = csvio.split_upload(
        io.BytesIO(data), FEATURES, chunk_rows, 1000, read_block=read_block
    )
    return layout, list(chunks)


def both_ways(chunk: csvio.Chunk, layout: csvio.Layout):
    """(fast output or None, csv-module output) for the same made-up probabilities."""
    probabilities = np.tile([0.25, 0.7, 0.05], (chunk.rows, 1))
    ids = probabilities.argmax(axis=1)
    parsed = csvio.parse_chunk(chunk.data, layout, FEATURES, chunk.first_row)
    slow = csvio.format_scored(parsed, layout, CLASSES, ids[: len(parsed.kept)], probabilities)
    fast = arrowcsv.parse(chunk.data, layout, chunk.rows)
    if fast is None:
        return None, slow
    return arrowcsv.format_scored(fast, layout, CLASSES, ids, probabilities), slow


def test_a_plain_export_is_stored_as_it_came_and_written_the_same_both_ways():
    lines = [b"id%d,5.%d,3.5,1.4,0.2\r\n" % (n, n % 10) for n in range(10)]
    layout, chunks = split(b"\xef\xbb\xbfid,sepal_length,sepal_width,petal_length,petal_width\r\n"
                           + b"".join(lines))  # fmt: skip
    assert [c.rows for c in chunks] == [3, 3, 3, 1]
    assert [c.first_row for c in chunks] == [1, 4, 7, 10]
    assert b"".join(c.data for c in chunks) == b"".join(lines)  # not re-written
    fast, slow = both_ways(chunks[0], layout)
    assert (
        fast
        == slow
        == (
            b"id0,5.0,3.5,1.4,0.2,versicolor,0.250000,0.700000,0.050000\r\n"
            b"id1,5.1,3.5,1.4,0.2,versicolor,0.250000,0.700000,0.050000\r\n"
            b"id2,5.2,3.5,1.4,0.2,versicolor,0.250000,0.700000,0.050000\r\n"
        )
    )


def test_features_in_another_order_with_spaces_are_echoed_trimmed_the_same_both_ways():
    data = b"petal_width,note,sepal_length,sepal_width,petal_length\n0.2,a b, 5.1 ,3.5,1.4\n"
    layout, chunks = split(data)
    fast, slow = both_ways(chunks[0], layout)
    assert fast == slow == b"a b,5.1,3.5,1.4,0.2,versicolor,0.250000,0.700000,0.050000\r\n"


def test_the_first_quote_switches_the_rest_of_the_file_to_the_csv_module():
    plain = b"".join(b"%d,5.1,3.5,1.4,0.2\n" % n for n in range(40))
    data = b"id,sepal_length,sepal_width,petal_length,petal_width\n" + plain
    data += b'"quoted\nid",5.1,3.5,1.4,0.2\n41,5.1,3.5,1.4,0.2\n'
    layout, chunks = split(data, chunk_rows=7, read_block=64)
    assert sum(c.rows for c in chunks) == 42
    assert chunks[0].data == plain[: plain.index(b"7,")]  # the plain start, as it came
    assert b'"quoted\nid",5.1,3.5,1.4,0.2\r\n41,5.1,3.5,1.4,0.2\r\n' in chunks[-1].data


def test_rows_the_fast_way_cannot_take_fall_back_with_their_reasons():
    head = b"id,sepal_length,sepal_width,petal_length,petal_width\n"
    for row in [
        b"1,5.1,3.5,1.4\n",
        b"1,5.1,x,1.4,0.2\n",
        b"1,nan,3.5,1.4,0.2\n",
        b"1,,3.5,1.4,0.2\n",
    ]:
        layout, (chunk,) = split(head + b"0,5.1,3.5,1.4,0.2\n" + row)
        assert arrowcsv.parse(chunk.data, layout, chunk.rows) is None
        parsed = csvio.parse_chunk(chunk.data, layout, FEATURES, 1)
        assert len(parsed.kept) == 1 and [r for r, _ in parsed.errors] == [2]


def test_cells_that_need_care_are_written_by_the_csv_module():
    head = b"id,sepal_length,sepal_width,petal_length,petal_width\n"
    layout, (chunk,) = split(head + b"=HYPERLINK(1),5.1,3.5,1.4,0.2\n")
    fast, slow = both_ways(chunk, layout)
    assert fast is None and slow.startswith(b"'=HYPERLINK(1),5.1,")
    layout, (chunk,) = split(head + b'"a,b",5.1,3.5,1.4,0.2\n')
    fast, slow = both_ways(chunk, layout)
    assert fast is None and slow.startswith(b'"a,b",5.1,')


def test_blank_lines_and_lone_carriage_returns_are_read_as_the_csv_module_reads_them():
    head = b"id,sepal_length,sepal_width,petal_length,petal_width\n"
    for body in [b"1,5.1,3.5,1.4,0.2\n , ,\n\n2,5,3,1,0.2\n", b"1,5.1,3.5,1.4,0.2\r2,5,3,1,0.2\r"]:
        layout, chunks = split(head + body)
        assert sum(c.rows for c in chunks) == 2
        parsed = csvio.parse_chunk(chunks[0].data, layout, FEATURES, 1)
        assert [f[0] for f in parsed.kept] == ["1", "2"]
