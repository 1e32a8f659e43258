"""The CSV reader and chunker, on the shapes people export."""

from __future__ import annotations

import csv
import io

import pytest

from core import csvio
from core.errors import BadRequest, PayloadTooLarge, Unprocessable

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def split(text: bytes | str, chunk_rows: int = 2, max_rows: int = 1000, max_row_bytes: int = 0):
    data = text.encode() if isinstance(text, str) else text
    layout, chunks = csvio.split_upload(
        io.BytesIO(data), FEATURES, chunk_rows, max_rows, max_row_bytes=max_row_bytes
    )
    return layout, list(chunks)


def rows_of(chunks) -> list[list[str]]:
    import csv

    out = []
    for chunk in chunks:
        out.extend(csv.reader(io.StringIO(chunk.data.decode(), newline="")))
    return out


def test_header_in_any_order_with_passthrough_columns():
    layout, chunks = split(
        "id,petal_width,Sepal Length (cm),sepal_width,petal_length,note\n1,0.2,5.1,3.5,1.4,x\n"
    )
    assert layout.columns[0] == "id"
    assert layout.feature_pos == [2, 3, 4, 1]
    assert layout.passthrough_pos == [0, 5]
    assert layout.output_header(FEATURES, ["a", "b"]) == [
        "id", "note", *FEATURES, "prediction", "proba_a", "proba_b",
    ]  # fmt: skip
    assert [c.rows for c in chunks] == [1]


def test_no_header_means_features_in_order():
    layout, chunks = split("5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n4.9,3.0,1.4,0.2\n")
    assert layout.columns is None
    assert [(c.index, c.first_row, c.rows) for c in chunks] == [(0, 1, 2), (1, 3, 1)]


def test_quoted_newlines_crlf_and_bom_keep_rows_whole():
    text = (
        "\ufeffid,sepal_length,sepal_width,petal_length,petal_width\r\n"
        '"a\r\nb",5.1,3.5,1.4,0.2\r\n\r\n"c ""q""",1,2,3,4\r\n'
    )
    layout, chunks = split(text.encode("utf-8"))
    assert layout.columns[0] == "id"
    assert rows_of(chunks) == [
        ["a\r\nb", "5.1", "3.5", "1.4", "0.2"],
        ['c "q"', "1", "2", "3", "4"],
    ]
    assert sum(c.rows for c in chunks) == 2


def test_missing_feature_columns_are_named():
    with pytest.raises(Unprocessable) as err:
        split("id,sepal_length,petal_length\n1,2,3\n")
    assert "sepal_width" in err.value.message and "petal_width" in err.value.message


def test_headerless_file_with_wrong_width_is_refused():
    with pytest.raises(Unprocessable, match="no header row and 5 columns"):
        split("1,5.1,3.5,1.4,0.2\n")


def test_empty_file_and_bad_utf8_and_too_many_rows():
    with pytest.raises(BadRequest, match="no rows"):
        split("\n\n")
    with pytest.raises(BadRequest, match="line 1 is not valid UTF-8"):
        split(b"\xff\xfe,1,2,3\n")
    with pytest.raises(PayloadTooLarge):
        split("1,2,3,4\n" * 11, max_rows=10)


def test_parse_chunk_sorts_rows_into_scored_and_errors():
    layout = csvio.Layout.build(["id", *FEATURES], 5, FEATURES)
    data = b"a,1,2,3,4\nb,1,,3,4\nc,1,2,nan,inf\nd,1,2\ne,1,x,3,4\n"
    parsed = csvio.parse_chunk(data, layout, FEATURES, first_row=11)
    assert [k[0] for k in parsed.kept] == ["a"]
    assert parsed.features.tolist() == [[1, 2, 3, 4]]
    assert parsed.errors == [
        (12, "sepal_width is missing"),
        (13, "petal_length is NaN; petal_width is infinite"),
        (14, "expected 5 columns, found 3"),
        (15, "sepal_width 'x' is not a number"),
    ]


def test_formula_column_names_are_escaped_too():
    layout = csvio.Layout.build(["=id", *FEATURES], 5, FEATURES)
    assert layout.output_header(FEATURES, ["a"])[0] == "'=id"


@pytest.mark.parametrize("cell", ["=1+2", "+cmd", "-x", "@SUM(A1)", "\tx", "\rx"])
def test_formula_cells_are_escaped(cell):
    assert csvio.escape_cell(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["-5", "+3.2", "abc", ""])
def test_plain_cells_pass_through(cell):
    assert csvio.escape_cell(cell) == cell


def test_a_long_field_the_upload_allowed_parses_in_the_worker():
    layout, chunks = split("note," + ",".join(FEATURES) + "\n" + "x" * 300_000 + ",1,2,3,4\n",
                           max_row_bytes=400_000)  # fmt: skip
    csv.field_size_limit(131072)  # as in a worker process, which never took an upload
    parsed = csvio.parse_chunk(chunks[0].data, layout, FEATURES, 1)
    assert parsed.errors == [] and len(parsed.kept[0][0]) == 300_000
