"""Reference (enrichment) tables: loading a CSV into the StateStore and reading it back for joins."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from regionflow.errors import RegionflowError
from regionflow.state.base import ReferenceInfo, StateStore

PART_ROWS = 100_000


@dataclass
class ReferenceLoad:
    info: ReferenceInfo
    duplicates: int  # rows dropped because a later row had the same key
    blank_keys: int  # rows dropped because their key was empty


def read_reference_csv(source: str | Path | bytes, key_column: str) -> tuple[pl.DataFrame, int, int]:
    """Read a reference CSV as text columns; drop blank keys and keep the last row of each key."""
    name = "reference data" if isinstance(source, bytes) else str(source)
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
    before = df.height
    df = df.filter(pl.col(key_column) != "")
    blank = before - df.height
    # (Checking first is several times cheaper than an order-keeping unique, and keys are usually unique.)
    keys = df.get_column(key_column)
    deduped = df if keys.n_unique() == df.height else df.unique(subset=[key_column], keep="last", maintain_order=True)
    return deduped, df.height - deduped.height, blank


def load_reference_table(state: StateStore, table: str, source: str | Path | bytes,
                         key_column: str) -> ReferenceLoad:
    """Replace reference table `table` in the state store with the CSV at source."""
    df, duplicates, blank = read_reference_csv(source, key_column)
    parts = [df.slice(i, PART_ROWS).write_csv() for i in range(0, max(df.height, 1), PART_ROWS)]
    info = state.load_reference(table, key_column, df.columns, parts, df.height)
    return ReferenceLoad(info=info, duplicates=duplicates, blank_keys=blank)


def reference_frame(state: StateStore, table: str) -> pl.DataFrame:
    """The whole reference table as text columns."""
    parts = state.reference_parts(table)
    if not parts:
        raise RegionflowError(f"reference table {table!r} is not loaded (run `regionflow reference load`)")
    frames = [pl.read_csv(io.StringIO(p), infer_schema=False, empty_string_is_null=False) for p in parts]
    return pl.concat(frames, how="vertical")
