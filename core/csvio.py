"""CSV as people export it: split an upload into chunks of rows, parse a chunk, write scored rows.

The API splits (it sees the bytes once, as they arrive); the worker parses and writes. Both agree
on a ``Layout``: the header row (or none) and where the model's features sit in it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from core.errors import BadRequest, PayloadTooLarge, Unprocessable
from core.features import normalize_name, parse_value

#: Characters that make a spreadsheet treat a cell as a formula (OWASP: CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Layout:
    """Where each feature sits in a row, and which other columns pass through to the result."""

    columns: list[str] | None  # the header row as given; None when the file has none
    width: int
    feature_pos: list[int]
    passthrough_pos: list[int]

    @classmethod
    def build(cls, columns: list[str] | None, width: int, feature_names: Sequence[str]) -> Layout:
        """:raises Unprocessable: when a header lacks (or repeats) a feature column."""
        if columns is None:
            if width != len(feature_names):
                raise Unprocessable(
                    f"the file has no header row and {width} columns; without a header the "
                    f"columns must be the model's {len(feature_names)} features in order "
                    f"({', '.join(feature_names)}), or add a header row naming them",
                    field="header",
                )
            return cls(None, width, list(range(width)), [])
        names = [normalize_name(c) for c in columns]
        positions = []
        missing = []
        for feature in feature_names:
            key = normalize_name(feature)
            found = [i for i, n in enumerate(names) if n == key]
            if len(found) > 1:
                raise Unprocessable(f"the header names {feature} {len(found)} times", field=feature)
            if not found:
                missing.append(feature)
            else:
                positions.append(found[0])
        if missing:
            raise Unprocessable(
                f"the header row has no column for {', '.join(missing)} "
                f"(found: {', '.join(columns) or 'nothing'})",
                field="header",
                missing_columns=missing,
            )
        passthrough = [i for i in range(width) if i not in positions]
        return cls(list(columns), width, positions, passthrough)

    def to_json(self) -> dict:
        return {"columns": self.columns, "width": self.width}

    @classmethod
    def from_json(cls, data: dict, feature_names: Sequence[str]) -> Layout:
        return cls.build(data["columns"], data["width"], feature_names)

    def output_header(self, feature_names: Sequence[str], class_names: Sequence[str]) -> list[str]:
        columns = self.columns or []
        passthrough = [escape_cell(columns[i]) for i in self.passthrough_pos]
        return [*passthrough, *feature_names, "prediction", *(f"proba_{c}" for c in class_names)]


@dataclass(frozen=True)
class Chunk:
    index: int
    first_row: int  # 1-based data row number of the chunk's first row
    rows: int
    data: bytes  # the rows as CSV, without the header


def _lines(text: io.TextIOBase, max_row_bytes: int) -> Iterator[str]:
    """The upload's lines, decoded; a line over the limit is refused without reading it all."""
    number = 0
    while True:
        try:
            line = text.readline(max_row_bytes + 2 if max_row_bytes else -1)
        except UnicodeDecodeError:
            raise BadRequest(
                f"line {number + 1} is not valid UTF-8", field=f"line {number + 1}"
            ) from None
        if not line:
            return
        number += 1
        if max_row_bytes and len(line.rstrip("\r\n")) > max_row_bytes:
            raise PayloadTooLarge(
                f"line {number} of the file is longer than {max_row_bytes} characters",
                field=f"line {number}",
            )
        yield line


def _rows(stream: BinaryIO, max_row_bytes: int) -> Iterator[list[str]]:
    """CSV rows as the csv module reads a file opened with newline="" (quoted newlines, LF,
    CRLF or CR, a UTF-8 BOM); blank rows are skipped."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(_lines(text, max_row_bytes))
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line = reader.line_num
            raise BadRequest(f"line {line} is not valid CSV: {exc}", field=f"line {line}") from None
        if any(field.strip() for field in row):
            yield row


def split_upload(
    stream: BinaryIO,
    feature_names: Sequence[str],
    chunk_rows: int,
    max_rows: int,
    max_columns: int = 0,
    max_row_bytes: int = 0,
) -> tuple[Layout, Iterator[Chunk]]:
    """Read the header (or first row) now; yield chunks of ``chunk_rows`` rows as they are read.

    The API parses the upload once, as it arrives, and stores each chunk re-written as plain
    CSV, so the worker reads exactly the rows the API counted.

    :raises BadRequest, Unprocessable: for an empty file or one without usable feature columns,
        PayloadTooLarge for too many columns (at once); PayloadTooLarge past ``max_rows`` rows
        or for a line over ``max_row_bytes``, BadRequest for text that is not UTF-8 CSV (while
        iterating).
    """
    csv.field_size_limit(max(max_row_bytes, 131072))
    rows = _rows(stream, max_row_bytes)
    fields = next(rows, None)
    if fields is None:
        raise BadRequest("the file has no rows", field="file")
    if max_columns and len(fields) > max_columns:
        raise PayloadTooLarge(
            f"the file has {len(fields)} columns; at most {max_columns} are accepted",
            field="header",
        )
    wanted = {normalize_name(f) for f in feature_names}
    is_header = any(normalize_name(f) in wanted for f in fields) or any(
        isinstance(parse_value(f), str) for f in fields
    )
    layout = Layout.build(fields if is_header else None, len(fields), feature_names)
    leading = [] if is_header else [fields]

    def chunks() -> Iterator[Chunk]:
        buffer: list[list[str]] = list(leading)
        index = 0
        first_row = 1
        total = len(buffer)
        for row in rows:
            buffer.append(row)
            total += 1
            if total > max_rows:
                raise PayloadTooLarge(f"the file has more than {max_rows} rows", field="file")
            if len(buffer) >= chunk_rows:
                yield Chunk(index, first_row, len(buffer), write_rows(buffer))
                index += 1
                first_row += len(buffer)
                buffer = []
        if buffer:
            yield Chunk(index, first_row, len(buffer), write_rows(buffer))

    return layout, chunks()


@dataclass
class ParsedChunk:
    features: np.ndarray  # (rows scored, features)
    kept: list[list[str]]  # the fields of each row that will be scored
    errors: list[tuple[int, str]]  # (data row number, why it is not scored)
    kept_rows: list[int] = field(default_factory=list)  # the data row number of each kept row

    def drop(self, failed: dict[int, str]) -> ParsedChunk:
        """The same chunk with the kept rows at these indexes moved to the errors."""
        keep = [i for i in range(len(self.kept)) if i not in failed]
        errors = self.errors + [(self.kept_rows[i], reason) for i, reason in failed.items()]
        return ParsedChunk(
            self.features[keep],
            [self.kept[i] for i in keep],
            sorted(errors),
            [self.kept_rows[i] for i in keep],
        )


def parse_chunk(
    data: bytes, layout: Layout, feature_names: Sequence[str], first_row: int
) -> ParsedChunk:
    """Parse a chunk's rows; a row that cannot be scored goes to ``errors`` with its reason."""
    csv.field_size_limit(2**31 - 1)  # the API bounded every row when it took the upload
    text = data.decode("utf-8", errors="replace")
    kept: list[list[str]] = []
    values: list[list[float]] = []
    errors: list[tuple[int, str]] = []
    kept_rows: list[int] = []
    for offset, fields in enumerate(csv.reader(io.StringIO(text, newline=""))):
        row = first_row + offset
        if len(fields) != layout.width:
            errors.append((row, f"expected {layout.width} columns, found {len(fields)}"))
            continue
        parsed = [parse_value(fields[i]) for i in layout.feature_pos]
        bad = [f"{n} {p}" for n, p in zip(feature_names, parsed, strict=True) if isinstance(p, str)]
        if bad:
            errors.append((row, "; ".join(bad)))
            continue
        kept.append(fields)
        kept_rows.append(row)
        values.append(parsed)  # type: ignore[arg-type]
    matrix = np.asarray(values, dtype=np.float64).reshape(len(values), len(feature_names))
    return ParsedChunk(matrix, kept, errors, kept_rows)


def escape_cell(value: str) -> str:
    """Keep a spreadsheet from running a pass-through cell as a formula (numbers stay as is)."""
    if value.startswith(FORMULA_START) and isinstance(parse_value(value), str):
        return "'" + value
    return value


def write_rows(rows: Iterable[Sequence[object]]) -> bytes:
    """CSV with CRLF line ends (RFC 4180): a field holding a lone CR is then quoted too."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8")


def format_scored(
    parsed: ParsedChunk,
    layout: Layout,
    class_names: Sequence[str],
    class_ids: np.ndarray,
    probabilities: np.ndarray,
) -> bytes:
    """The result rows of one chunk: pass-through columns, features, prediction, probabilities."""
    rows = []
    for fields, ids, probs in zip(parsed.kept, class_ids, probabilities, strict=True):
        passthrough = [escape_cell(fields[i]) for i in layout.passthrough_pos]
        features = [fields[i].strip() for i in layout.feature_pos]
        rows.append([*passthrough, *features, class_names[ids], *(f"{p:.6f}" for p in probs)])
    return write_rows(rows)


def format_errors(errors: Iterable[tuple[int, str]]) -> bytes:
    return write_rows(errors)
