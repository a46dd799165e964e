"""Enrichment lookups: the reference table sorted by key once, searched per chunk.

A hash join of a small chunk against a large table rebuilds the hash table every time; a sorted key
array built once (and memory-mapped by every worker) keeps each lookup proportional to the chunk.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import polars as pl


class ReferenceIndex:
    def __init__(self, keys: np.ndarray, values: pl.DataFrame):
        self.keys = keys  # sorted, fixed-width unicode
        self.values = values  # enrichment fields, rows in the order of keys

    @classmethod
    def build(cls, frame: pl.DataFrame, key: str, fields: list[str]) -> ReferenceIndex:
        """Index a reference table (text columns) on key, keeping only the enrichment fields."""
        missing = [f for f in [key, *fields] if f not in frame.columns]
        if missing:
            raise ValueError(f"reference table lacks column(s) {missing}")
        keys = np.asarray(frame.get_column(key).to_list(), dtype=str)
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], frame.select(fields)[order])

    def lookup(self, keys: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, row positions in values) for each key."""
        wanted = np.asarray(keys.to_list(), dtype=str)
        if len(self.keys) == 0 or len(wanted) == 0:
            return np.zeros(len(wanted), dtype=bool), np.zeros(len(wanted), dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.keys, wanted), len(self.keys) - 1)
        return self.keys[pos] == wanted, pos

    def save(self, base: Path) -> None:
        """Write base.keys.npy and base.arrow atomically (each via a temp file and rename)."""
        base.parent.mkdir(parents=True, exist_ok=True)
        for suffix, write in ((".keys.npy", lambda p: np.save(p, self.keys, allow_pickle=False)),
                              (".arrow", lambda p: self.values.write_ipc(p))):
            fd, tmp = tempfile.mkstemp(dir=base.parent, suffix=".tmp")
            os.close(fd)
            with open(tmp, "wb") as fh:
                write(fh)
            os.replace(tmp, f"{base}{suffix}")

    @classmethod
    def load(cls, base: str | Path) -> ReferenceIndex:
        return cls(np.load(f"{base}.keys.npy", mmap_mode="r", allow_pickle=False), pl.read_ipc(f"{base}.arrow"))

    @staticmethod
    def exists(base: Path) -> bool:
        return Path(f"{base}.keys.npy").exists() and Path(f"{base}.arrow").exists()
