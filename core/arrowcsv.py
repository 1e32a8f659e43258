"""A chunk's CSV parsed and written with pyarrow: the fast path of csvio's parse and format.

It takes the common chunk (every row the layout's width, every feature a finite number, no
pass-through cell that needs quoting or formula escaping) and answers ``None`` for anything else;
csvio's csv-module path then handles that chunk row by row, with a reason for each bad row. Both
paths write the same bytes for a chunk the fast path takes (tests/test_arrowcsv.py).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from core.csvio import FORMULA_START, Layout, fixed6_parts, write_rows

#: A pass-through cell the fast path leaves to csvio: one that needs quotes, or could be a formula.
_NEEDS_CARE = '[,"\\r\\n]|^[' + "".join("\\" + c if c in "-+" else c for c in FORMULA_START) + "]"


@dataclass(frozen=True)
class ArrowChunk:
    table: pa.Table  # every column as text, as read
    features: np.ndarray  # (rows, features), all finite
    feature_text: list[pa.Array]  # each feature column as given, trimmed


def _combine(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def parse(data: bytes, layout: Layout, rows: int) -> ArrowChunk | None:
    """The chunk's table and feature matrix, or None when a row needs csvio's care."""
    names = [f"c{i}" for i in range(layout.width)]
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None  # a row of another width, text that is not UTF-8, ...
    if table.num_rows != rows:
        return None
    texts = [_combine(pc.utf8_trim_whitespace(table.column(i))) for i in layout.feature_pos]
    try:
        columns = [pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False) for text in texts]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # a feature that is missing or not a number
    features = np.column_stack(columns) if columns else np.empty((rows, 0))
    if not np.isfinite(features).all():
        return None
    return ArrowChunk(table, features, texts)


def _cell(text: str) -> str:
    """One value as a CSV cell, quoted if it needs to be."""
    return write_rows([[text, ""]]).decode("utf-8")[:-3]


def _probability_text(column: np.ndarray) -> pa.Array:
    whole, fraction = fixed6_parts(column)
    digits = pc.utf8_lpad(pa.array(fraction).cast(pa.string()), 6, "0")
    return pc.binary_join_element_wise(pa.array(whole).cast(pa.string()), digits, ".")


def format_scored(
    chunk: ArrowChunk,
    layout: Layout,
    class_names: Sequence[str],
    class_ids: np.ndarray,
    probabilities: np.ndarray,
) -> bytes | None:
    """The result rows as csvio.format_scored writes them, or None when a cell needs its care."""
    passthrough = [_combine(chunk.table.column(i)) for i in layout.passthrough_pos]
    for column in passthrough:
        if pc.any(pc.match_substring_regex(column, _NEEDS_CARE)).as_py():
            return None
    names = pa.array([_cell(name) for name in class_names], pa.string())
    prediction = pa.DictionaryArray.from_arrays(pa.array(class_ids, pa.int32()), names)
    columns = [
        *passthrough,
        *chunk.feature_text,
        prediction.cast(pa.string()),
        *(_probability_text(probabilities[:, i]) for i in range(probabilities.shape[1])),
    ]
    lines = pc.binary_join_element_wise(*columns, ",")
    lines = pc.binary_join_element_wise(lines, "\r\n", "")
    return _text_bytes(_combine(lines))


def _text_bytes(array: pa.Array) -> bytes:
    """A string array's values laid end to end."""
    if len(array) == 0:
        return b""
    width = np.int64 if pa.types.is_large_string(array.type) else np.int32
    _, offsets, values = array.buffers()
    bounds = np.frombuffer(offsets, dtype=width, count=2, offset=array.offset * width().itemsize)
    end = np.frombuffer(
        offsets, dtype=width, count=1, offset=(array.offset + len(array)) * width().itemsize
    )
    return memoryview(values)[int(bounds[0]) : int(end[0])].tobytes()
