"""SQLite engines for the state store and the routing control: WAL, a busy timeout, BEGIN IMMEDIATE writers.

Both adapters keep their data in SQLite files shared by several processes, so both need the same engine
plumbing; it lives here, outside either port, so neither imports the other. The settings that differ
between them (busy timeout, synchronous level, foreign keys) are parameters.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL

# The execution option write_transaction sets; the "begin" listener turns it into BEGIN IMMEDIATE.
WRITE_OPTION = "regionflow_write"

# One writer at a time per SQLite engine, queued in this process: threads waiting in SQLite's busy
# handler instead sleep in growing steps (up to 100 ms) between tries, which with a few jobs writing side by
# side cost more than the writes. Other processes still meet the busy timeout.
_WRITERS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()


def sqlite_engine(url: URL, *, busy_timeout_ms: int, synchronous: Literal["NORMAL", "FULL"],
                  foreign_keys: bool = False) -> Engine:
    """An engine on the SQLite file at url, in WAL mode with the given busy timeout and synchronous level.

    Transactions opened by write_transaction begin IMMEDIATE; all others begin deferred.
    """
    engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN itself (pysqlite's own handling breaks
        # SAVEPOINT and cannot start an IMMEDIATE transaction).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            if foreign_keys:
                cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front, so busy_timeout applies and a deferred read lock is
        # never upgraded (which fails at once with SQLITE_BUSY under WAL when another writer committed).
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    _WRITERS[engine] = threading.RLock()
    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction, committed on exit (rolled back on an exception).

    On a sqlite_engine it begins IMMEDIATE, after the writers of this process before it; other engines
    ignore the option and begin as usual.
    """
    writers = _WRITERS.get(engine)
    with writers if writers is not None else nullcontext(), engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            yield conn
