"""SQL plumbing of the state store: engines for SQLite and PostgreSQL, and dialect-aware statement helpers."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam, create_engine, select, text
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError

from regionflow.errors import ConfigError, RegionflowError, StateUnavailable
from regionflow.sqlite_engine import sqlite_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000

IN_BATCH = 500  # values per IN (...) list: well under every driver's parameter limit

dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def engine_url(url: str, password: str | None = None) -> URL:
    """Parse a state-store URL: sqlite:///path or postgresql:// (driver rewritten to psycopg 3), with
    password filled in when a postgresql:// URL has none (a password in the URL wins)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"state store url {url!r}: not a database URL") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:") or parsed.database.startswith("file:"):
            raise ConfigError(f"state store url {url!r}: needs a database file (sqlite:///path/to/state.db)")
        return parsed.set(drivername="sqlite+pysqlite")
    if backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed.set(password=password) if password is not None and parsed.password is None else parsed
    raise ConfigError(f"state store url {url!r}: unsupported scheme (expected sqlite:/// or postgresql://)")


def store_engine(url: URL) -> Engine:
    """The engine for a parsed state-store URL (see engine_url); creates a SQLite file's directory."""
    if url.get_backend_name() == "sqlite":
        Path(url.database or "").expanduser().parent.mkdir(parents=True, exist_ok=True)
        return sqlite_engine(url, busy_timeout_ms=SQLITE_BUSY_TIMEOUT_MS, synchronous="NORMAL", foreign_keys=True)
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})


def unavailable(url: URL, exc: DBAPIError) -> StateUnavailable:
    """The one-line error for a database that could not be opened: the URL without its password and the
    driver's first line (libpq names the host and port, and says "password authentication failed")."""
    cause = exc.orig if exc.orig is not None else exc
    lines = [line for line in str(cause).splitlines() if line.strip()]
    reason = " ".join(lines[0].split()) if lines else type(cause).__name__
    return StateUnavailable(f"state store {url.render_as_string(hide_password=True)}: cannot connect: {reason}")


def xact_lock(conn: Connection, key: int) -> None:
    """Dialect helper: a lock held until the transaction ends (SQLite writers already hold the db lock)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def dialect_insert(conn: Connection) -> Any:
    """Dialect helper: the dialect's INSERT construct, which has ON CONFLICT DO UPDATE (SQLite, PostgreSQL)."""
    name = conn.dialect.name
    if name == "postgresql":
        return pg_dialect.insert
    if name == "sqlite":
        return sqlite_dialect.insert
    raise RegionflowError(f"state store: no upsert for the {name} dialect")


def upsert(conn: Connection, table: Table, columns: Sequence[str]) -> Any:
    """INSERT of columns that, on a primary-key conflict, overwrites the existing row's other columns."""
    stmt = dialect_insert(conn)(table)
    pk = [c.name for c in table.primary_key.columns]
    return stmt.on_conflict_do_update(index_elements=pk,
                                      set_={c: stmt.excluded[c] for c in columns if c not in pk})


def bulk_insert(conn: Connection, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """executemany of rows (tuples of values for columns), straight to the driver."""
    if rows:
        sql, order = _compiled(conn, table, columns, overwrite=False)
        _execute(conn, sql, order, columns, rows)


def bulk_upsert(conn: Connection, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """bulk_insert that overwrites rows whose primary key exists. Keys must be distinct within rows."""
    if rows:
        sql, order = _compiled(conn, table, columns, overwrite=True)
        _execute(conn, sql, order, columns, rows)


# (dialect, table, columns, overwrite) -> (SQL text, the compiled statement's parameter order or None for named
# parameters). Compiling an INSERT ... ON CONFLICT costs more than executing it for the few rows of a job
# step, and every write ends with two of them (the feed append); the schema's tables never change at run time.
_COMPILED: dict[tuple[str, str, tuple[str, ...], bool], tuple[str, tuple[str, ...] | None]] = {}


def bulk_insert_dicts(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """bulk_insert of rows given as dicts, which must all have the first row's keys."""
    if rows:
        columns = list(rows[0])
        bulk_insert(conn, table, columns, [tuple(row[c] for c in columns) for row in rows])


def _compiled(conn: Connection, table: Table, columns: Sequence[str], *,
              overwrite: bool) -> tuple[str, tuple[str, ...] | None]:
    """The INSERT (overwrite: the upsert) of columns, compiled for conn's dialect once per process.

    Only the per-row parameter processing of SQLAlchemy is skipped, which is safe for the schema's plain
    types and several times faster."""
    key = (conn.dialect.name, table.fullname, tuple(columns), overwrite)
    found = _COMPILED.get(key)
    if found is None:
        stmt = upsert(conn, table, columns) if overwrite else table.insert()
        compiled = stmt.compile(dialect=conn.dialect, column_keys=list(columns))
        found = (str(compiled), tuple(compiled.positiontup or ()) if compiled.positional else None)
        _COMPILED[key] = found
    return found


def _execute(conn: Connection, sql: str, order: tuple[str, ...] | None, columns: Sequence[str],
             rows: list[tuple[Any, ...]]) -> None:
    params: list[Any]
    if order is None:
        params = [dict(zip(columns, row, strict=True)) for row in rows]
    elif list(order) == list(columns):
        params = rows
    else:
        where = [list(columns).index(name) for name in order]
        params = [tuple(row[i] for i in where) for row in rows]
    conn.exec_driver_sql(sql, params)


def insert_if_absent(conn: Connection, table: Table, values: dict[str, Any]) -> bool:
    """Insert in a savepoint; False when the primary key exists (also when a racing insert won)."""
    try:
        with conn.begin_nested():
            conn.execute(table.insert().values(**values))
    except IntegrityError:
        return False
    return True


# (table, key columns) -> SELECT of the row by bound key values: building a statement costs more than
# running it on a small table, and a job step fetches the rows it wrote.
_FETCH: dict[tuple[str, tuple[str, ...]], Any] = {}


def fetch_row(conn: Connection, table: Table, **key: Any) -> dict[str, Any] | None:
    """The row of table whose columns equal key's values, as a dict, or None."""
    names = tuple(key)
    stmt = _FETCH.get((table.fullname, names))
    if stmt is None:
        stmt = select(table).where(*(table.c[name] == bindparam(f"k_{name}") for name in names))
        _FETCH[(table.fullname, names)] = stmt
    row = conn.execute(stmt, {f"k_{name}": value for name, value in key.items()}).first()
    return dict(row._mapping) if row is not None else None


def batches(values: set[Any]) -> Iterator[list[Any]]:
    """values in sorted lists of at most IN_BATCH, for IN (...) lists."""
    ordered = sorted(values)
    for i in range(0, len(ordered), IN_BATCH):
        yield ordered[i:i + IN_BATCH]
