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


#: Bytes the splitter reads from an upload at a time.
READ_BLOCK = 1 << 20
_BOM = b"\xef\xbb\xbf"
#: Bytes that surely make a line non-blank: printable ASCII other than the space and the comma.
_SOLID = np.array([32 < b < 127 and b != ord(",") for b in range(256)])


def _lines(text: io.TextIOBase, max_row_bytes: int, first_line: int) -> Iterator[str]:
    """The upload's lines, decoded; a line over the limit is refused without reading it all."""
    number = first_line
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


def _rows(stream: BinaryIO, max_row_bytes: int, first_line: int = 0) -> Iterator[list[str]]:
    """CSV rows as the csv module reads a file opened with newline="" (quoted newlines, LF,
    CRLF or CR); blank rows are skipped. ``first_line``: lines of the file before ``stream``."""
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    reader = csv.reader(_lines(text, max_row_bytes, first_line))
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line = first_line + reader.line_num
            raise BadRequest(f"line {line} is not valid CSV: {exc}", field=f"line {line}") from None
        if any(field.strip() for field in row):
            yield row


@dataclass(frozen=True)
class _Lines:
    """Whole lines of an upload that are rows as they stand: no quote, no lone CR, no blank
    line, UTF-8, none over the length limit. Such lines need no parsing to be split."""

    data: bytes
    ends: np.ndarray  # the offset just past each line's "\n"

    @classmethod
    def of(cls, piece: bytes, max_row_bytes: int) -> _Lines | None:
        """The piece (whole lines) as simple lines, or None when it needs the csv module."""
        if b'"' in piece or piece.count(b"\r") != piece.count(b"\r\n"):
            return None
        if not piece.isascii():
            try:
                piece.decode("utf-8")
            except UnicodeDecodeError:
                return None
        raw = np.frombuffer(piece, dtype=np.uint8)
        ends = np.flatnonzero(raw == ord("\n")) + 1
        starts = np.concatenate(([0], ends[:-1]))
        if max_row_bytes and int((ends - starts).max()) - 1 > max_row_bytes:
            return None  # bytes over the limit; the csv module counts the characters
        solid = np.cumsum(_SOLID[raw], dtype=np.int64)[ends - 1]
        for i in np.flatnonzero(np.diff(solid, prepend=0) == 0):
            line = piece[starts[i] : ends[i]].decode("utf-8")
            if not any(cell.strip() for cell in line.split(",")):
                return None  # a blank row, which the csv module path skips
        return cls(piece, ends)


class _Prefixed(io.RawIOBase):
    """Bytes already read, then the rest of the stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head = memoryview(head)
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _pieces(stream: BinaryIO, max_row_bytes: int, read_block: int) -> Iterator[_Lines | list[str]]:
    """The upload (after a UTF-8 BOM) as runs of simple lines, read a block at a time, for as
    long as it has them; from the first block that has not, rows read by the csv module."""
    pending = b""
    started = False
    line = 0
    while True:
        block = stream.read(read_block)
        data = pending + block if pending else block
        if not started:
            if block and len(data) < len(_BOM):
                pending = data
                continue
            data = data.removeprefix(_BOM)
            started = True
        if not block and data and not data.endswith(b"\n"):
            data += b"\n"
        cut = data.rfind(b"\n") + 1
        piece, pending = data[:cut], data[cut:]
        lines = _Lines.of(piece, max_row_bytes) if piece else None
        too_long = max_row_bytes and len(pending) > max_row_bytes + 2
        if (piece and lines is None) or too_long:
            rest = io.BufferedReader(_Prefixed(piece + pending, stream), max(read_block, 8192))
            yield from _rows(rest, max_row_bytes, line)
            return
        if lines is not None:
            yield lines
            line += len(lines.ends)
        if not block:
            return


class _Chunker:
    """Rows (simple lines as they are, or parsed rows re-written) gathered into chunks of at
    most ``chunk_rows`` rows and ``chunk_bytes`` bytes (a longer row is a chunk of its own)."""

    def __init__(self, chunk_rows: int, chunk_bytes: int, max_rows: int) -> None:
        self.chunk_rows = chunk_rows
        self.chunk_bytes = chunk_bytes
        self.max_rows = max_rows
        self.parts: list[bytes] = []
        self.count = 0  # rows in the chunk being gathered
        self.size = 0  # and their bytes
        self.index = 0
        self.first_row = 1
        self.total = 0

    def add_row(self, row: list[str]) -> Iterator[Chunk]:
        data = write_rows([row])
        if self.count and self.size + len(data) > self.chunk_bytes:
            yield self._emit()
        self._take(data, 1)
        if self.count >= self.chunk_rows:
            yield self._emit()

    def add_lines(self, lines: _Lines, skip: int = 0) -> Iterator[Chunk]:
        ends = lines.ends
        i = skip
        at = int(ends[skip - 1]) if skip else 0
        while i < len(ends):
            # the lines from i that end within the bytes this chunk has room for
            fit = int(np.searchsorted(ends, at + self.chunk_bytes - self.size, "right")) - i
            if fit <= 0 and self.count:
                yield self._emit()
                continue
            take = min(self.chunk_rows - self.count, max(fit, 1), len(ends) - i)
            end = int(ends[i + take - 1])
            self._take(lines.data[at:end], take)
            at, i = end, i + take
            if self.count >= self.chunk_rows or self.size >= self.chunk_bytes:
                yield self._emit()

    def _take(self, data: bytes, rows: int) -> None:
        self.total += rows
        if self.total > self.max_rows:
            raise PayloadTooLarge(f"the file has more than {self.max_rows} rows", field="file")
        self.parts.append(data)
        self.count += rows
        self.size += len(data)

    def close(self) -> Iterator[Chunk]:
        if self.count:
            yield self._emit()

    def _emit(self) -> Chunk:
        chunk = Chunk(self.index, self.first_row, self.count, b"".join(self.parts))
        self.index += 1
        self.first_row += self.count
        self.parts, self.count, self.size = [], 0, 0
        return chunk


def split_upload(
    stream: BinaryIO,
    feature_names: Sequence[str],
    chunk_rows: int,
    max_rows: int,
    max_columns: int = 0,
    max_row_bytes: int = 0,
    read_block: int = READ_BLOCK,
    chunk_bytes: int = 8 << 20,
) -> tuple[Layout, Iterator[Chunk]]:
    """Read the header (or first row) now; yield chunks of ``chunk_rows`` rows (fewer if they
    would pass ``chunk_bytes``) as they are read.

    The API reads the upload once, as it arrives. Lines that are rows as they stand (no quotes,
    no lone CR, no blank line: most exports) are cut at their line ends without parsing and
    stored as they are; from the first block that is not so plain, rows are read with the csv
    module and stored re-written as plain CSV. Either way the worker reads exactly the rows the
    API counted.

    :raises BadRequest, Unprocessable: for an empty file or one without usable feature columns,
        PayloadTooLarge for too many columns (at once); PayloadTooLarge past ``max_rows`` rows
        or for a line over ``max_row_bytes``, BadRequest for text that is not UTF-8 CSV (while
        iterating).
    """
    csv.field_size_limit(max(max_row_bytes, 131072))
    pieces = _pieces(stream, max_row_bytes, read_block)
    first = next(pieces, None)
    if first is None:
        raise BadRequest("the file has no rows", field="file")
    if isinstance(first, _Lines):
        fields = next(csv.reader([first.data[: first.ends[0]].decode("utf-8")]))
    else:
        fields = first
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

    def chunks() -> Iterator[Chunk]:
        chunker = _Chunker(chunk_rows, chunk_bytes, max_rows)
        if isinstance(first, _Lines):
            yield from chunker.add_lines(first, skip=1 if is_header else 0)
        elif not is_header:
            yield from chunker.add_row(first)
        for piece in pieces:
            if isinstance(piece, _Lines):
                yield from chunker.add_lines(piece)
            else:
                yield from chunker.add_row(piece)
        yield from chunker.close()

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
    whole, fraction = fixed6_parts(probabilities)
    rows = []
    for fields, ids, wholes, fractions in zip(
        parsed.kept, class_ids, whole.tolist(), fraction.tolist(), strict=True
    ):
        passthrough = [escape_cell(fields[i]) for i in layout.passthrough_pos]
        features = [fields[i].strip() for i in layout.feature_pos]
        probs = (f"{w}.{f:06d}" for w, f in zip(wholes, fractions, strict=True))
        rows.append([*passthrough, *features, class_names[ids], *probs])
    return write_rows(rows)


def fixed6_parts(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities to six decimals as (whole, millionths) integers: one rounding rule
    (half to even) for both ways of writing a chunk."""
    millionths = np.rint(np.asarray(probabilities, dtype=np.float64) * 1e6).astype(np.int64)
    return millionths // 1_000_000, millionths % 1_000_000


def format_errors(errors: Iterable[tuple[int, str]]) -> bytes:
    return write_rows(errors)
