"""Split: scan an input object once, checking the file as a whole, and cut it into chunks as byte ranges.

The file is read in blocks; record boundaries come from records.record_ends, so quoted newlines never
split a record. A chunk is a byte range of the (immutable, versioned) input: from its first record's
first byte to its last record's terminator, blank lines included (they are not records). Workers read
their range from the input itself, so a split writes no chunk objects and nothing but the input has to be
replicated for a region to take a job over.
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
# Chunk sizes chosen from the file when the pipeline names none: enough chunks to keep every worker busy
# to the end (CHUNKS_PER_WORKER), each big enough that its fixed cost (a state transaction, an object
# write, a task round trip) is noise, and small enough to bound a worker's memory.
CHUNKS_PER_WORKER = 8
MIN_CHUNK_BYTES = 1 << 20
MAX_CHUNK_BYTES = 8 << 20


def auto_chunk_bytes(size: int, workers: int) -> int:
    """The byte size to cut chunks at for an input of size bytes processed by workers workers."""
    return max(MIN_CHUNK_BYTES, min(MAX_CHUNK_BYTES, size // (max(1, workers) * CHUNKS_PER_WORKER) + 1))


@dataclass(frozen=True)
class ChunkRange:
    idx: int
    offset: int  # byte offset in the input of the chunk's first record
    length: int  # bytes from there to the end of the chunk's last record (its terminator included)
    first_row: int  # 1-based data row number of the first record
    rows: int


@dataclass(frozen=True)
class ChunkCut:
    """Where chunks end: after `rows` records, or at the first record reaching `bytes` bytes."""

    rows: int | None = None
    bytes: int | None = None

    def __post_init__(self) -> None:
        if (self.rows is None) == (self.bytes is None) or (self.rows or self.bytes or 0) < 1:
            raise ValueError("a chunk cut needs exactly one of rows or bytes, at least 1")


@dataclass
class SplitResult:
    header: list[str]
    columns: dict[str, int]  # field -> column index
    rows_in: int
    chunks: list[ChunkRange]


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


class _Chunker:
    """Groups records (absolute start and end offsets, in file order) into chunk ranges."""

    def __init__(self, cut: ChunkCut, emit: Callable[[ChunkRange], None]):
        self.cut = cut
        self.emit = emit
        self.chunks: list[ChunkRange] = []
        self.rows_in = 0
        self._start = 0  # offset of the open chunk's first record
        self._end = 0  # end of its last record so far
        self._rows = 0

    def add(self, starts: np.ndarray, ends: np.ndarray) -> None:
        i, n = 0, len(starts)
        while i < n:
            if self._rows == 0:
                self._start = int(starts[i])
            if self.cut.rows is not None:
                last = min(i + self.cut.rows - self._rows, n) - 1
            else:
                # the first record whose end reaches the chunk's byte budget closes it
                reach = int(np.searchsorted(ends, self._start + (self.cut.bytes or 0), side="left"))
                last = min(max(reach, i), n - 1)
            taken = last - i + 1
            self._rows += taken
            self.rows_in += taken
            self._end = int(ends[last])
            i = last + 1
            full = (self._rows == self.cut.rows if self.cut.rows is not None
                    else self._end - self._start >= (self.cut.bytes or 0))
            if full:
                self.flush()

    def flush(self) -> None:
        if self._rows:
            chunk = ChunkRange(idx=len(self.chunks), offset=self._start, length=self._end - self._start,
                               first_row=self.rows_in - self._rows + 1, rows=self._rows)
            self.emit(chunk)
            self.chunks.append(chunk)
        self._rows = 0


def split_stream(
    stream: Readable,
    pipeline: Pipeline,
    cut: ChunkCut,
    emit_chunk: Callable[[ChunkRange], None] = lambda _chunk: None,
) -> SplitResult:
    """Read stream to the end, calling emit_chunk(range) for each chunk as it closes.

    Raises FileRefused for problems with the file as a whole (nothing emitted is then to be used).
    """
    quote = ord(pipeline.csv.quote)
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    header: list[str] | None = None
    columns: dict[str, int] = {}
    carry = b""
    in_quote = False
    offset = 0  # file offset of carry[0]
    first_block = True
    chunker = _Chunker(cut, emit_chunk)

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
        file_end = offset + len(buf)  # (before a missing final newline is supplied below)
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
        starts, stops, term_ends = record_spans(buf, ends)
        cut_at = int(ends[-1]) + 1 if len(ends) else 0
        carry, block_offset, offset = buf[cut_at:], offset, offset + cut_at
        if len(carry) > MAX_RECORD_BYTES:
            raise FileRefused(
                f"a record longer than {MAX_RECORD_BYTES // (1024 * 1024)} MiB after data row {chunker.rows_in} "
                "(unbalanced quote?)"
            )
        i = 0
        if header is None and len(starts):
            raw = buf[starts[0]:stops[0]].decode("utf-8")
            header = next(csv.reader([raw], delimiter=pipeline.csv.delimiter, quotechar=pipeline.csv.quote))
            columns = map_header(header, pipeline)
            i = 1
        chunker.add(starts[i:] + block_offset, np.minimum(term_ends[i:] + block_offset, file_end))
        if eof:
            break
    if header is None:
        raise FileRefused("input has no header (only blank lines)")
    chunker.flush()
    return SplitResult(header=header, columns=columns, rows_in=chunker.rows_in, chunks=chunker.chunks)


class _HeaderRead(Exception):
    pass


def read_header(stream: BinaryIO, pipeline: Pipeline) -> tuple[list[str], dict[str, int]]:
    """The input's header and field -> column mapping, reading no further than the first data row."""
    found: list[SplitResult] = []

    def stop(_chunk: ChunkRange) -> None:
        raise _HeaderRead

    # The first block is kept: the stream may not seek (an S3 object's body does not).
    head = stream.read(BLOCK_SIZE)
    with contextlib.suppress(_HeaderRead):  # stopped at the first data row, on purpose
        found.append(split_stream(_Chain(head, stream), pipeline, ChunkCut(rows=1), stop))
    if found:
        return found[0].header, found[0].columns
    # stopped at the first data row: the header was read and mapped just before it
    result = split_stream(_Prefix(head), pipeline, ChunkCut(rows=1 << 40))
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
