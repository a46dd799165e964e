"""StoreCore: what every area of SqlStateStore shares: the engine, the clock, transactions, the feed append.

Every mutating method is one transaction that ends with _append_feed. Appends are serialised (SQLite:
writers start with BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped advisory lock taken just before the
append and held to commit), so feed sequence numbers become visible in commit order with no holes filled
in later, and hlc values grow along the feed even across processes.

A local append takes its hlc above the recorded versions (row_versions) of the rows it writes, so a local
write in any process orders after the replicated write it overwrote.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, inspect, select, text
from sqlalchemy.exc import InterfaceError, OperationalError

from regionflow.sqlite_engine import write_transaction
from regionflow.state.hlc import HybridClock
from regionflow.state.schema import ADDED_COLUMNS, VERSIONED_TABLES, change_feed, feed_key, metadata, row_versions
from regionflow.state.sql import (
    batches,
    bulk_insert,
    bulk_upsert,
    dumps,
    engine_url,
    store_engine,
    unavailable,
    xact_lock,
)

# Keys of PostgreSQL transaction-scoped advisory locks.
_FEED_LOCK = 0x7266_6565  # "rfee": serialises change-feed appends
_SCHEMA_LOCK = 0x7266_7363  # "rfsc": serialises create_all across processes

FEED_COLUMNS = ("table_name", "key", "row_image", "hlc", "epoch", "origin", "created_at")
VERSION_COLUMNS = ("table_name", "key", "hlc", "epoch", "origin")

# Built once: every write runs them, and building a statement costs more than running it.
_LAST_HLC = select(change_feed.c.hlc).order_by(change_feed.c.seq.desc()).limit(1)
_MAX_VERSION_HLC = select(func.max(row_versions.c.hlc)).where(
    row_versions.c.table_name == bindparam("table_name"), row_versions.c.key.in_(bindparam("keys", expanding=True)))

# A change to append: (table name, key, row image JSON or None for a delete, epoch).
FeedEntry = tuple[str, str, str | None, int]


def change_entry(table: Table, row: dict[str, Any], epoch: int) -> FeedEntry:
    """The feed entry of row written (inserted or updated) under epoch."""
    return (table.name, feed_key(table, row), dumps(row), epoch)


def deletion_entry(table: Table, key: str, epoch: int) -> FeedEntry:
    """The feed entry of the row with feed key `key` deleted under epoch."""
    return (table.name, key, None, epoch)


def _add_missing_columns_and_indexes(conn: Connection) -> None:
    """Bring a store created by an earlier release up to the current tables (create_all adds no columns,
    and no indexes to a table that exists). Columns first: a new index may be on a new column."""
    inspector = inspect(conn)
    for table_name, names in ADDED_COLUMNS.items():
        present = {c["name"] for c in inspector.get_columns(table_name)}
        for name in names:
            if name not in present:
                column = metadata.tables[table_name].c[name]
                kind = column.type.compile(dialect=conn.dialect)
                conn.execute(text(f'ALTER TABLE {table_name} ADD COLUMN {name} {kind}'))
    for table in metadata.sorted_tables:
        present_indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in present_indexes:
                index.create(conn)


class StoreCore:
    """The engine, clock and transactions of a SqlStateStore; the per-area mixins build on it."""

    def __init__(self, url: str, region: str, *, password: str | None = None, feed: bool = True) -> None:
        self.url = url  # as given: a password passed separately is only in the engine's URL
        self.region = region
        # A store that no region replicates from (`regionflow process`) keeps no change feed: its writes
        # cost what the rows cost, not twice that (a reference table's text would be stored again).
        self.keeps_feed = feed
        self._clock = HybridClock()
        self._engine = store_engine(engine_url(url, password))
        try:
            with self._write() as conn:
                xact_lock(conn, _SCHEMA_LOCK)
                metadata.create_all(conn)
                _add_missing_columns_and_indexes(conn)
        except (OperationalError, InterfaceError) as exc:  # the first connection: down, or login refused
            self._engine.dispose()
            raise unavailable(self._engine.url, exc) from None

    def close(self) -> None:
        """Release the engine's connections."""
        self._engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with write_transaction(self._engine) as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            yield conn

    def _append_feed(self, conn: Connection, entries: list[FeedEntry]) -> None:
        """Append changes at the end of a write, recording the versions of last-writer-wins rows."""
        if not entries or not self.keeps_feed:
            return
        xact_lock(conn, _FEED_LOCK)
        last = conn.execute(_LAST_HLC).scalar()
        versioned: dict[tuple[str, str], int] = {}  # (table, key) -> index of its last entry
        for i, (name, key, _, _) in enumerate(entries):
            if name in VERSIONED_TABLES:
                versioned[(name, key)] = i
        after = last or 0
        if versioned:  # order after the rows' latest writes, also replicated ones applied by another process
            after = max(after, _max_version_hlc(conn, set(versioned)))
        first = self._clock.reserve(len(entries), after=after)
        now, origin = time.time(), self.region
        rows = [(name, key, image, hlc, epoch, origin, now)
                for hlc, (name, key, image, epoch) in enumerate(entries, start=first)]
        bulk_insert(conn, change_feed, FEED_COLUMNS, rows)
        bulk_upsert(conn, row_versions, VERSION_COLUMNS,
                    [(name, key, first + i, entries[i][3], origin) for (name, key), i in versioned.items()])


def _max_version_hlc(conn: Connection, keys: set[tuple[str, str]]) -> int:
    """The highest recorded hlc of the rows named by (table, key), 0 when none is recorded."""
    best = 0
    for name in {t for t, _ in keys}:
        for batch in batches({k for t, k in keys if t == name}):
            best = max(best, conn.execute(_MAX_VERSION_HLC, {"table_name": name, "keys": batch}).scalar() or 0)
    return best
