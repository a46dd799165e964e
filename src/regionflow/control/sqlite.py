"""SqliteRoutingControl: the routing control in a SQLite file shared by every region process on a machine.

Tables: ``control`` holds the single record (``id`` is always 1); ``control_history`` holds every record
the control has had, keyed by epoch (the epoch only grows, so it is unique).

Writes (initialize, set_active) open their transaction with ``BEGIN IMMEDIATE``: the database write lock
is taken before the current epoch is read, so the read and the update are one atomic step across
processes, and of two processes racing set_active with the same expected epoch exactly one wins. The
file runs in WAL mode, so readers are not blocked by a writer; a writer waits up to the busy timeout
(10 s) for another writer before the control counts as unavailable.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, IntegrityError

from regionflow.control.base import ControlNotInitialized, ControlState, stale_epoch
from regionflow.errors import ControlUnavailable
from regionflow.sqlite_engine import sqlite_engine, write_transaction

BUSY_TIMEOUT_MS = 10_000

metadata = MetaData()

control = Table(
    "control",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("active_region", String, nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String, nullable=False, default=""),
    CheckConstraint("id = 1", name="control_single_row"),
    CheckConstraint("epoch >= 1", name="control_epoch_positive"),
)

control_history = Table(
    "control_history",
    metadata,
    Column("epoch", Integer, primary_key=True, autoincrement=False),
    Column("active_region", String, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String, nullable=False, default=""),
)


def _state(row: Any) -> ControlState:
    m = row._mapping
    return ControlState(active_region=m["active_region"], epoch=m["epoch"], updated_at=m["updated_at"],
                        updated_by=m["updated_by"])


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


class SqliteRoutingControl:
    """The RoutingControl on a SQLite file (``sqlite:///path/to/control.db``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ControlUnavailable(f"routing control at {self.path} is unreachable: {exc.strerror}") from None
        self._engine = self._make_engine()
        with self._write() as conn:
            metadata.create_all(conn)

    def __repr__(self) -> str:
        return f"SqliteRoutingControl({str(self.path)!r})"

    # ------------------------------------------------------------------ plumbing

    def _make_engine(self) -> Engine:
        url = URL.create("sqlite+pysqlite", database=str(self.path))
        # synchronous=FULL: a switch must survive a power cut.
        return sqlite_engine(url, busy_timeout_ms=BUSY_TIMEOUT_MS, synchronous="FULL")

    @contextmanager
    def _unavailable_on_error(self) -> Iterator[None]:
        try:
            yield
        except IntegrityError:
            raise
        except DBAPIError as exc:
            raise ControlUnavailable(f"routing control at {self.path} is unreachable: {_reason(exc)}") from None

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._unavailable_on_error(), write_transaction(self._engine) as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._unavailable_on_error(), self._engine.connect() as conn:
            yield conn

    def _current(self, conn: Connection) -> ControlState | None:
        row = conn.execute(select(control).where(control.c.id == 1)).first()
        return _state(row) if row is not None else None

    def _not_initialized(self) -> ControlNotInitialized:
        return ControlNotInitialized(
            f"routing control at {self.path} has no record yet (start a region, which initializes it "
            "with the configured primary)"
        )

    # ------------------------------------------------------------------ the port

    def get(self) -> ControlState:
        with self._read() as conn:
            state = self._current(conn)
        if state is None:
            raise self._not_initialized()
        return state

    def set_active(self, region: str, expected_epoch: int, *, by: str = "") -> ControlState:
        if not isinstance(region, str) or not region:
            raise ValueError("set_active needs a region name")
        if isinstance(expected_epoch, bool) or not isinstance(expected_epoch, int):
            raise TypeError(f"expected_epoch must be an int, not {type(expected_epoch).__name__}")
        with self._write() as conn:
            current = self._current(conn)
            if current is None:
                raise self._not_initialized()
            if current.epoch != expected_epoch:
                raise stale_epoch(expected_epoch, current)
            new = ControlState(active_region=region, epoch=expected_epoch + 1, updated_at=time.time(),
                               updated_by=by)
            res = conn.execute(
                update(control)
                .where(control.c.id == 1, control.c.epoch == expected_epoch)
                .values(active_region=new.active_region, epoch=new.epoch, updated_at=new.updated_at,
                        updated_by=new.updated_by)
            )
            if res.rowcount != 1:  # cannot happen under the write lock; refuse rather than guess
                raise stale_epoch(expected_epoch, self._current(conn) or current)
            conn.execute(insert(control_history).values(epoch=new.epoch, active_region=new.active_region,
                                                        updated_at=new.updated_at, updated_by=new.updated_by))
        return new

    def initialize(self, region: str) -> ControlState:
        if not isinstance(region, str) or not region:
            raise ValueError("initialize needs a region name")
        with self._write() as conn:
            current = self._current(conn)
            if current is not None:
                return current
            # Epoch 1 on a new file. If the record was removed by hand but its history survives, continue
            # after the last epoch instead: the epoch must never go back (jobs are owned under it).
            last = conn.execute(select(func.max(control_history.c.epoch))).scalar()
            new = ControlState(active_region=region, epoch=(last or 0) + 1, updated_at=time.time(),
                               updated_by="initialize")
            values = {"active_region": new.active_region, "epoch": new.epoch, "updated_at": new.updated_at,
                      "updated_by": new.updated_by}
            conn.execute(insert(control).values(id=1, **values))
            conn.execute(insert(control_history).values(**values))
        return new

    def history(self, limit: int = 50) -> list[ControlState]:
        if limit <= 0:
            return []
        stmt = select(control_history).order_by(control_history.c.epoch.desc()).limit(limit)
        with self._read() as conn:
            return [_state(r) for r in conn.execute(stmt)]

    def close(self) -> None:
        self._engine.dispose()
