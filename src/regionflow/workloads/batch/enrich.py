"""Enrichment lookups: the reference table keyed once, saved as Arrow IPC and memory-mapped by every worker.

Each chunk first narrows the table to the keys it holds (one pass over the table's keys, no hash table
of the whole table to build) and then joins that small remainder, so a lookup costs a scan of the
table's key column plus work proportional to the chunk. That suits tables that fit in memory a few times
over; a big table is indexed by keyindex.KeyIndex instead, which gives the same `join`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol

import polars as pl

KEY = "__rf_key"
FOUND = "__rf_found"


class Lookup(Protocol):
    """What a chunk needs of a reference index."""

    def join(self, df: pl.DataFrame, key: str) -> pl.DataFrame: ...


def join_present(df: pl.DataFrame, key: str, present: pl.DataFrame) -> pl.DataFrame:
    """df left-joined on key with present (KEY unique, the fields, FOUND), FOUND false where absent, rows
    in df's order: the one join both kinds of index end with, so their outputs cannot differ."""
    joined = df.join(present, left_on=key, right_on=KEY, how="left", maintain_order="left", coalesce=True)
    return joined.with_columns(pl.col(FOUND).fill_null(False))


class ReferenceIndex:
    def __init__(self, table: pl.DataFrame):
        self.table = table  # KEY (unique), the enrichment fields, FOUND (always true)

    @classmethod
    def build(cls, frame: pl.DataFrame, key: str, fields: list[str], *, keys_unique: bool = False) -> ReferenceIndex:
        """Index a reference table (text columns) on key, keeping only the enrichment fields; the first
        row of a repeated key wins. keys_unique: the caller has made the keys unique (read_reference_csv)."""
        missing = [f for f in [key, *fields] if f not in frame.columns]
        if missing:
            raise ValueError(f"reference table lacks column(s) {missing}")
        table = frame.select(pl.col(key).alias(KEY), *fields)
        # (A loaded table's keys are unique already; checking is much cheaper than an order-keeping unique.)
        if not keys_unique and table.get_column(KEY).n_unique() != table.height:
            table = table.unique(subset=[KEY], keep="first", maintain_order=True)
        table = table.with_columns(pl.lit(True).alias(FOUND))
        return cls(table)

    @property
    def fields(self) -> list[str]:
        return [c for c in self.table.columns if c not in (KEY, FOUND)]

    def join(self, df: pl.DataFrame, key: str) -> pl.DataFrame:
        """df with the enrichment fields added (null where the key is not found) and a boolean FOUND
        column, rows in df's order."""
        keys = df.get_column(key)
        return join_present(df, key, self.table.filter(pl.col(KEY).is_in(keys.implode())))

    def save(self, base: Path) -> None:
        """Write base.arrow atomically (a temp file renamed into place)."""
        base.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=base.parent, suffix=".tmp")
        os.close(fd)
        try:
            self.table.write_ipc(tmp)
            os.replace(tmp, f"{base}.arrow")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load(cls, base: str | Path) -> ReferenceIndex:
        return cls(pl.read_ipc(f"{base}.arrow"))

    @staticmethod
    def exists(base: Path) -> bool:
        return Path(f"{base}.arrow").exists()
