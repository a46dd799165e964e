"""Reference (enrichment) tables: loading a CSV into the StateStore, reading it back, and indexing it.

A table is indexed one of two ways, by size; both give the same rows for the same keys. A small one is
read whole and narrowed per chunk (enrich.ReferenceIndex: the fastest lookups). A big one is read in
blocks and indexed on disk (keyindex.KeyIndex), so that neither the indexing nor the lookups hold it in
memory.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from regionflow.errors import RegionflowError
from regionflow.state.base import ReferenceInfo, StateStore
from regionflow.workloads.batch.enrich import Lookup, ReferenceIndex
from regionflow.workloads.batch.keyindex import KeyIndex, Unsupported
from regionflow.workloads.batch.records import record_ends

PART_ROWS = 100_000
# From this size on a reference is indexed on disk. Read whole, a table takes about 2.5 times its CSV size
# while it is indexed (text columns of 16-byte views) and its index twice that size during the chunks (1.5
# and 1.2 GiB for the 583 MB reference of 10M rows): 160 and 130 MiB at this size.
COMPACT_FROM_BYTES = 64 << 20
BLOCK_BYTES = 4 << 20
QUOTE = ord('"')


@dataclass
class ReferenceLoad:
    info: ReferenceInfo
    duplicates: int  # rows dropped because a later row had the same key
    blank_keys: int  # rows dropped because their key was empty


def read_reference_csv(source: str | Path | bytes, key_column: str) -> tuple[pl.DataFrame, int, int]:
    """Read a reference CSV as text columns; drop blank keys and keep the last row of each key."""
    name = "reference data" if isinstance(source, bytes) else str(source)
    df = _parse(source, name, key_column)
    before = df.height
    df = df.filter(pl.col(key_column) != "")
    blank = before - df.height
    # (Checking first is several times cheaper than an order-keeping unique, and keys are usually unique.)
    keys = df.get_column(key_column)
    deduped = df if keys.n_unique() == df.height else df.unique(subset=[key_column], keep="last", maintain_order=True)
    return deduped, df.height - deduped.height, blank


def _parse(source: str | Path | bytes, name: str, key_column: str) -> pl.DataFrame:
    """The CSV as text columns, BOM off the first name; RegionflowError if unreadable or keyless."""
    try:
        df = pl.read_csv(source, infer_schema=False, empty_string_is_null=False, raise_if_empty=True)
    except FileNotFoundError:
        raise RegionflowError(f"{name}: no such file") from None
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RegionflowError(f"{name}: not a readable UTF-8 CSV file: {first}") from None
    df = df.rename({c: c.lstrip("\ufeff") for c in df.columns})
    if key_column not in df.columns:
        raise RegionflowError(f"{name}: key column {key_column!r} not in header {df.columns}")
    return df


def reference_batches(path: Path, key_column: str, block_bytes: int = BLOCK_BYTES) -> Iterator[pl.DataFrame]:
    """The reference CSV at path as frames of text columns, in file order, reading block_bytes at a time.

    Blocks are cut after a newline outside quotes (RFC 4180, as the input is split) and parsed by the same
    reader as read_reference_csv, each under the file's header line; nothing is dropped here.
    """
    name = str(path)
    header = b""
    carry = b""
    in_quote = False
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise RegionflowError(f"{name}: no such file") from None
    with fh:
        while True:
            block = fh.read(block_bytes)
            buf = carry + block
            if not block:
                if buf.strip(b"\r\n"):
                    yield _parse(header + buf, name, key_column)
                return
            scanned = len(carry)
            ends, in_quote = record_ends(buf[scanned:], QUOTE, in_quote)
            if not len(ends):
                carry = buf
                continue
            ends = ends + scanned
            body, carry = buf[:int(ends[-1]) + 1], buf[int(ends[-1]) + 1:]
            if not header:
                # The first record that is not a blank line (the whole read skips those too).
                start = 0
                for end in ends.tolist():
                    if body[start:end + 1].strip(b"\r\n"):
                        header, body = body[start:end + 1], body[end + 1:]
                        break
                    start = end + 1
                if not header:
                    continue
                _parse(header, name, key_column)  # the key column is checked before any row is read
            if body.strip(b"\r\n"):
                yield _parse(header + body, name, key_column)


def load_reference_table(state: StateStore, table: str, source: str | Path | bytes,
                         key_column: str) -> ReferenceLoad:
    """Replace reference table `table` in the state store with the CSV at source."""
    df, duplicates, blank = read_reference_csv(source, key_column)
    parts = [df.slice(i, PART_ROWS).write_csv() for i in range(0, max(df.height, 1), PART_ROWS)]
    info = state.load_reference(table, key_column, df.columns, parts, df.height)
    return ReferenceLoad(info=info, duplicates=duplicates, blank_keys=blank)


def index_reference_file(path: Path, key_column: str, fields: list[str], base: Path, *,
                         compact_from: int | None = None) -> None:
    """Index the reference CSV at path on key_column for lookups of fields, saved at base: in memory
    below compact_from bytes (default COMPACT_FROM_BYTES), on disk (KeyIndex) from there on, and in memory
    for any table KeyIndex cannot hold."""
    try:
        big = path.stat().st_size >= (COMPACT_FROM_BYTES if compact_from is None else compact_from)
    except FileNotFoundError:
        raise RegionflowError(f"{path}: no such file") from None
    if big:
        try:
            KeyIndex.build(lambda: reference_batches(path, key_column), key_column, fields, base).close()
            return
        except Unsupported:
            pass
    frame, _, _ = read_reference_csv(path, key_column)
    ReferenceIndex.build(frame, key_column, fields, keys_unique=True).save(base)


def index_reference_table(state: StateStore, table: str, key_column: str, fields: list[str], base: Path, *,
                          compact_from: int | None = None) -> None:
    """Index reference table `table` of the state store as index_reference_file indexes a file."""
    parts = state.reference_parts(table)
    if not parts:
        raise RegionflowError(f"reference table {table!r} is not loaded (run `regionflow reference load`)")
    if sum(len(p) for p in parts) >= (COMPACT_FROM_BYTES if compact_from is None else compact_from):
        def batches() -> Iterator[pl.DataFrame]:
            for part in parts:
                yield pl.read_csv(io.StringIO(part), infer_schema=False, empty_string_is_null=False)

        try:
            KeyIndex.build(batches, key_column, fields, base).close()
            return
        except Unsupported:
            pass
    frame = pl.concat([pl.read_csv(io.StringIO(p), infer_schema=False, empty_string_is_null=False) for p in parts],
                      how="vertical")
    ReferenceIndex.build(frame, key_column, fields).save(base)


def index_exists(base: Path) -> bool:
    """Whether an index of either kind is saved at base."""
    return KeyIndex.exists(base) or ReferenceIndex.exists(base)


def open_index(base: str | Path) -> Lookup:
    """The index saved at base, of whichever kind it is."""
    return KeyIndex.load(base) if KeyIndex.exists(base) else ReferenceIndex.load(base)
