"""Split: stream an input object into chunk objects of N records, checking the file as a whole.

The file is read in blocks; record boundaries come from records.record_ends, so quoted newlines never
split a record. A chunk holds raw record bytes (no header) exactly as they were in the input.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import numpy as np

from regionflow.errors import FileRefused
from regionflow.workloads.batch.pipeline import Pipeline, normalise_header
from regionflow.workloads.batch.records import record_ends, record_spans

BLOCK_SIZE = 8 * 1024 * 1024
MAX_RECORD_BYTES = 64 * 1024 * 1024
BOM = b"\xef\xbb\xbf"


@dataclass
class SplitResult:
    header: list[str]
    columns: dict[str, int]  # field -> column index
    rows_in: int
    chunks: list[tuple[int, int]]  # (first_row, rows) per chunk


def map_header(header: list[str], pipeline: Pipeline) -> dict[str, int]:
    """Field -> column index, matching header names ignoring case and spaces; FileRefused if any is missing."""
    positions: dict[str, int] = {}
    for i, name in enumerate(header):
        positions.setdefault(normalise_header(name), i)
    columns, missing = {}, []
    for fld, wanted in pipeline.fields.items():
        idx = positions.get(normalise_header(wanted))
        if idx is None:
            missing.append(wanted)
        else:
            columns[fld] = idx
    if missing:
        shown = ", ".join(repr(m) for m in missing)
        raise FileRefused(f"required column(s) missing from the header: {shown}")
    return columns


def _check_text(buf: bytes, decoder: codecs.IncrementalDecoder, offset: int, final: bool) -> None:
    nul = buf.find(b"\x00")
    if nul >= 0:
        raise FileRefused(f"input is not CSV text (NUL byte at offset {offset + nul})")
    try:
        decoder.decode(buf, final)
    except UnicodeDecodeError as exc:
        raise FileRefused(
            f"input is not valid UTF-8 (byte 0x{buf[exc.start]:02x} at offset {offset + exc.start})"
        ) from None


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def split_stream(
    stream: Readable,
    pipeline: Pipeline,
    chunk_rows: int,
    emit_chunk: Callable[[int, bytes, int, int], None],
) -> SplitResult:
    """Read stream to the end, calling emit_chunk(index, data, first_row, rows) for each full chunk.

    Raises FileRefused for problems with the file as a whole; chunks already emitted are then
    the caller's to discard.
    """
    quote = ord(pipeline.csv.quote)
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    header: list[str] | None = None
    columns: dict[str, int] = {}
    carry = b""
    in_quote = False
    offset = 0  # file offset of carry[0]
    first_block = True
    rows_in = 0
    chunks: list[tuple[int, int]] = []
    parts: list[bytes] = []
    part_rows = 0

    def flush() -> None:
        nonlocal parts, part_rows
        if part_rows:
            first = rows_in - part_rows + 1
            emit_chunk(len(chunks), b"\n".join(parts) + b"\n", first, part_rows)
            chunks.append((first, part_rows))
        parts, part_rows = [], 0

    while True:
        block = stream.read(BLOCK_SIZE)
        eof = not block
        if first_block:
            first_block = False
            if eof:
                raise FileRefused("input is empty")
            if block.startswith(BOM):
                block = block[len(BOM):]
                offset = len(BOM)
        scan_from = len(carry)
        buf = carry + block
        if eof:
            if not buf:
                break
            if not buf.endswith(b"\n"):
                buf += b"\n"
        _check_text(buf[scan_from:], decoder, offset + scan_from, final=eof)
        ends, state = record_ends(buf[scan_from:], quote, in_quote)
        # record_ends scanned only the new bytes; shift its offsets back into buf.
        ends = ends + scan_from
        if eof and state:
            # An unterminated quote: the rest of the file is one record (its field count will reject it).
            ends = np.append(ends, len(buf) - 1)
            state = False
        in_quote = state
        starts, stops = record_spans(buf, ends)
        cut = int(ends[-1]) + 1 if len(ends) else 0
        carry, offset = buf[cut:], offset + cut
        if len(carry) > MAX_RECORD_BYTES:
            raise FileRefused(
                f"a record longer than {MAX_RECORD_BYTES // (1024 * 1024)} MiB after data row {rows_in} "
                "(unbalanced quote?)"
            )
        i, n = 0, len(starts)
        if header is None and n:
            raw = buf[starts[0]:stops[0]].decode("utf-8")
            header = next(csv.reader([raw], delimiter=pipeline.csv.delimiter, quotechar=pipeline.csv.quote))
            columns = map_header(header, pipeline)
            i = 1
        while i < n:
            take = min(chunk_rows - part_rows, n - i)
            parts.append(buf[starts[i]:stops[i + take - 1]])
            part_rows += take
            rows_in += take
            i += take
            if part_rows == chunk_rows:
                flush()
        if eof:
            break
    if header is None:
        raise FileRefused("input has no header (only blank lines)")
    flush()
    return SplitResult(header=header, columns=columns, rows_in=rows_in, chunks=chunks)



class _HeaderRead(Exception):
    pass


def read_header(stream: BinaryIO, pipeline: Pipeline) -> tuple[list[str], dict[str, int]]:
    """The input's header and field -> column mapping, reading no further than the first chunk."""
    found: list[SplitResult] = []

    def stop(_idx: int, _data: bytes, _first: int, _rows: int) -> None:
        raise _HeaderRead

    # The first block is kept: the stream may not seek (an S3 object's body does not).
    head = stream.read(BLOCK_SIZE)
    with contextlib.suppress(_HeaderRead):  # stopped at the first data row, on purpose
        found.append(split_stream(_Chain(head, stream), pipeline, 1, stop))
    if found:
        return found[0].header, found[0].columns
    # stopped at the first data row: the header was read and mapped just before it
    result = split_stream(_Prefix(head), pipeline, 1 << 40, lambda *_: None)
    return result.header, result.columns


class _Chain:
    """The bytes already read from a stream, then the rest of the stream."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head = head
        self._rest = rest

    def read(self, n: int = -1) -> bytes:
        if self._head:
            data, self._head = self._head, b""
            return data
        return self._rest.read(n)


class _Prefix:
    """A stream of the first block only, cut after its first complete line."""

    def __init__(self, data: bytes):
        cut = data.find(b"\n")
        self._data = data if cut < 0 else data[: cut + 1]

    def read(self, _n: int = -1) -> bytes:
        data, self._data = self._data, b""
        return data
