"""SqlStateStore: the StateStore on SQLAlchemy Core, one code path for SQLite (WAL) and PostgreSQL.

Every mutating method is one transaction that ends by appending its changes to the change feed.
Appends are serialised (SQLite: writers start with BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped
advisory lock taken just before the append and held to commit), so feed sequence numbers become visible
in commit order with no holes filled in later, and hlc values grow along the feed even across processes.

Writes in a job's lifecycle are fenced by epoch with conditional UPDATEs on the job row. Chunk writes
fence with a no-op update of the job row (``owner_epoch = owner_epoch WHERE owner_epoch = :epoch``): it
changes nothing, so it adds no feed row, but it locks the row until commit, so a concurrent claim under a
higher epoch cannot interleave with the chunk write.

Replication (DESIGN §3, §4): every feed append of a last-writer-wins row (jobs, chunks, notifications,
reference tables) also records the row's hlc in row_versions, and so does applying a change from another
region's feed. An apply compares against those versions and the local job's owner epoch, writes the
surviving images with one bulk upsert per table, and appends nothing to the feed. It locks the local job,
notification and reference-table rows it decides on (PostgreSQL: SELECT ... FOR UPDATE; SQLite writers
hold the database lock), and a local append takes its hlc above the recorded versions of the rows it
writes, so a local write in any process orders after the replicated write it overwrote.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields as dc_fields
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError

from regionflow.errors import ConfigError, FencedOut, RegionflowError
from regionflow.state.base import (
    TERMINAL_STATUSES,
    Change,
    ChunkRecord,
    ChunkStatus,
    JobRecord,
    NotificationRecord,
    ReferenceInfo,
    RejectRecord,
)
from regionflow.state.hlc import HybridClock
from regionflow.state.schema import (
    FEED_TABLES,
    OBJECTS_FEED,
    VERSIONED_TABLES,
    change_feed,
    feed_key,
    jobs,
    metadata,
    notifications,
    plan_executions,
    reference_parts,
    reference_tables,
    replication_links,
    row_versions,
)
from regionflow.state.schema import chunks as chunks_table  # add_chunks' `chunks` parameter shadows it
from regionflow.state.schema import rejects as rejects_table  # so does complete_chunk's `rejects`

SQLITE_BUSY_TIMEOUT_MS = 30_000

# Keys of PostgreSQL transaction-scoped advisory locks.
_FEED_LOCK = 0x7266_6565  # "rfee": serialises change-feed appends
_SCHEMA_LOCK = 0x7266_7363  # "rfsc": serialises create_all across processes

_WRITE_OPTION = "regionflow_write"

_FEED_COLUMNS = ("table_name", "key", "row_image", "hlc", "epoch", "origin", "created_at")
_VERSION_COLUMNS = ("table_name", "key", "hlc", "epoch", "origin")
_IN_BATCH = 500  # values per IN (...) list: well under every driver's parameter limit
_REJECT_COLUMNS = ("job_id", "row_no", "chunk_idx", "raw", "reason")

_JOB_COLUMNS = frozenset(f.name for f in dc_fields(JobRecord))
# Columns transition_job never sets from **fields: identity, ownership, and what it sets itself.
_PROTECTED_JOB_COLUMNS = frozenset(
    {"job_id", "status", "owner_region", "owner_epoch", "created_at", "updated_at"}
)


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _dialect_insert(conn: Connection) -> Any:
    """Dialect helper: the dialect's INSERT construct, which has ON CONFLICT DO UPDATE (SQLite, PostgreSQL)."""
    name = conn.dialect.name
    if name == "postgresql":
        return pg_dialect.insert
    if name == "sqlite":
        return sqlite_dialect.insert
    raise RegionflowError(f"state store: no upsert for the {name} dialect")


def _upsert(conn: Connection, table: Table, columns: Sequence[str]) -> Any:
    """INSERT of columns that, on a primary-key conflict, overwrites the existing row's other columns."""
    stmt = _dialect_insert(conn)(table)
    pk = [c.name for c in table.primary_key.columns]
    return stmt.on_conflict_do_update(index_elements=pk,
                                      set_={c: stmt.excluded[c] for c in columns if c not in pk})


def _bulk_insert(conn: Connection, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """executemany of rows (tuples of values for columns), straight to the driver."""
    if rows:
        _bulk_execute(conn, table.insert(), columns, rows)


def _bulk_upsert(conn: Connection, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """_bulk_insert that overwrites rows whose primary key exists. Keys must be distinct within rows."""
    if rows:
        _bulk_execute(conn, _upsert(conn, table, columns), columns, rows)


def _bulk_execute(conn: Connection, stmt: Any, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """executemany of an INSERT statement over rows (tuples of values for columns), straight to the driver.

    The statement is compiled by SQLAlchemy for the connection's dialect; only the per-row parameter
    processing is skipped, which is safe for the schema's plain types and several times faster.
    """
    compiled = stmt.compile(dialect=conn.dialect, column_keys=list(columns))
    params: list[Any]
    if not compiled.positional:
        params = [dict(zip(columns, row, strict=True)) for row in rows]
    elif list(compiled.positiontup or ()) == list(columns):
        params = rows
    else:
        where = [list(columns).index(name) for name in compiled.positiontup or ()]
        params = [tuple(row[i] for i in where) for row in rows]
    conn.exec_driver_sql(str(compiled), params)


def _bulk_insert_dicts(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    if rows:
        columns = list(rows[0])
        _bulk_insert(conn, table, columns, [tuple(row[c] for c in columns) for row in rows])


def engine_url(url: str) -> URL:
    """Parse a state-store URL: sqlite:///path or postgresql:// (driver rewritten to psycopg 3)."""
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
        return parsed.set(drivername="postgresql+psycopg")
    raise ConfigError(f"state store url {url!r}: unsupported scheme (expected sqlite:/// or postgresql://)")


def _sqlite_engine(url: URL) -> Engine:
    Path(url.database or "").expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN itself (pysqlite's own handling breaks
        # SAVEPOINT and cannot start an IMMEDIATE transaction).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front, so busy_timeout applies and a deferred read lock is
        # never upgraded (which fails at once with SQLITE_BUSY under WAL when another writer committed).
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _postgres_engine(url: URL) -> Engine:
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})


def _xact_lock(conn: Connection, key: int) -> None:
    """Dialect helper: a lock held until the transaction ends (SQLite writers already hold the db lock)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _batches(values: set[Any]) -> Iterator[list[Any]]:
    ordered = sorted(values)
    for i in range(0, len(ordered), _IN_BATCH):
        yield ordered[i:i + _IN_BATCH]


def _key_values(table: Table, key: str) -> dict[str, Any]:
    """The primary-key column values a feed key names (the inverse of feed_key)."""
    cols = list(table.primary_key.columns)
    if len(cols) == 1:
        return {cols[0].name: key}
    head, tail = key.rsplit("/", 1)  # the second key column is always an integer
    return {cols[0].name: head, cols[1].name: int(tail)}


def _job_of(change: Change) -> str:
    """The job a chunk or reject change belongs to (its key is 'job_id/number')."""
    if change.row is not None:
        return str(change.row["job_id"])
    return change.key.rsplit("/", 1)[0]


def _reference_of(change: Change) -> str:
    """The reference table a reference_parts change belongs to (its key is 'table/part_no')."""
    if change.row is not None:
        return str(change.row["table_name"])
    return change.key.rsplit("/", 1)[0]


def _job(row: Any) -> JobRecord:
    return JobRecord(**row._mapping)


def _chunk(row: Any) -> ChunkRecord:
    return ChunkRecord(**row._mapping)


def _reference_info(row: Any) -> ReferenceInfo:
    m = row._mapping
    return ReferenceInfo(table=m["name"], key_column=m["key_column"], columns=json.loads(m["columns"]),
                         rows=m["rows"], parts=m["parts"], revision=m["revision"], loaded_at=m["loaded_at"])


def _notification(row: Any) -> NotificationRecord:
    m = dict(row._mapping)
    m["recipients"] = json.loads(m["recipients"])
    return NotificationRecord(**m)


class SqlStateStore:
    """The StateStore for sqlite:/// and postgresql:// URLs."""

    def __init__(self, url: str, region: str) -> None:
        self.url = url
        self.region = region
        self._clock = HybridClock()
        parsed = engine_url(url)
        sqlite = parsed.get_backend_name() == "sqlite"
        self._engine = _sqlite_engine(parsed) if sqlite else _postgres_engine(parsed)
        with self._write() as conn:
            _xact_lock(conn, _SCHEMA_LOCK)
            metadata.create_all(conn)

    def __repr__(self) -> str:
        url = self._engine.url.render_as_string(hide_password=True)
        return f"SqlStateStore({url!r}, region={self.region!r})"

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            conn.execution_options(**{_WRITE_OPTION: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            yield conn

    def _append_feed(self, conn: Connection, entries: list[tuple[str, str, str | None, int]]) -> None:
        """Append changes, each (table name, key, row image JSON or None, epoch), at the end of a write."""
        if not entries:
            return
        _xact_lock(conn, _FEED_LOCK)
        last = conn.execute(select(change_feed.c.hlc).order_by(change_feed.c.seq.desc()).limit(1)).scalar()
        versioned: dict[tuple[str, str], int] = {}  # (table, key) -> index of its last entry
        for i, (name, key, _, _) in enumerate(entries):
            if name in VERSIONED_TABLES:
                versioned[(name, key)] = i
        after = last or 0
        if versioned:  # order after the rows' latest writes, also replicated ones applied by another process
            after = max(after, self._max_version_hlc(conn, set(versioned)))
        first = self._clock.reserve(len(entries), after=after)
        now, origin = time.time(), self.region
        rows = [(name, key, image, hlc, epoch, origin, now)
                for hlc, (name, key, image, epoch) in enumerate(entries, start=first)]
        _bulk_insert(conn, change_feed, _FEED_COLUMNS, rows)
        _bulk_upsert(conn, row_versions, _VERSION_COLUMNS,
                     [(name, key, first + i, entries[i][3], origin) for (name, key), i in versioned.items()])

    @staticmethod
    def _max_version_hlc(conn: Connection, keys: set[tuple[str, str]]) -> int:
        """The highest recorded hlc of the rows named by (table, key), 0 when none is recorded."""
        best = 0
        for name in {t for t, _ in keys}:
            for batch in _batches({k for t, k in keys if t == name}):
                stmt = select(func.max(row_versions.c.hlc)).where(row_versions.c.table_name == name,
                                                                  row_versions.c.key.in_(batch))
                best = max(best, conn.execute(stmt).scalar() or 0)
        return best

    @staticmethod
    def _change(table: Table, row: dict[str, Any], epoch: int) -> tuple[str, str, str | None, int]:
        return (table.name, feed_key(table, row), _dumps(row), epoch)

    @staticmethod
    def _deletion(table: Table, key: str, epoch: int) -> tuple[str, str, str | None, int]:
        return (table.name, key, None, epoch)

    @staticmethod
    def _insert_if_absent(conn: Connection, table: Table, values: dict[str, Any]) -> bool:
        """Insert in a savepoint; False when the primary key exists (also when a racing insert won)."""
        try:
            with conn.begin_nested():
                conn.execute(table.insert().values(**values))
        except IntegrityError:
            return False
        return True

    @staticmethod
    def _row(conn: Connection, table: Table, **key: Any) -> dict[str, Any] | None:
        stmt = select(table).where(*(table.c[name] == value for name, value in key.items()))
        row = conn.execute(stmt).first()
        return dict(row._mapping) if row is not None else None

    def _fenced(self, conn: Connection, job_id: str, epoch: int, action: str,
                from_status: tuple[str, ...] | None = None) -> FencedOut:
        """Explain why a fenced write matched no row."""
        job = self._row(conn, jobs, job_id=job_id)
        if job is None:
            why = f"job {job_id} does not exist"
        elif job["owner_epoch"] != epoch:
            why = (f"job {job_id} is owned by {job['owner_region'] or '?'} under epoch {job['owner_epoch']}, "
                   f"not epoch {epoch}")
        elif from_status is not None and job["status"] not in from_status:
            why = f"job {job_id} is {job['status']}, not {' or '.join(from_status)}"
        else:
            why = f"job {job_id} changed concurrently"
        return FencedOut(f"cannot {action}: {why}")

    def _fence(self, conn: Connection, job_id: str, epoch: int, action: str) -> None:
        """Lock the job row until commit if it is owned under epoch; else raise FencedOut."""
        res = conn.execute(
            update(jobs)
            .where(jobs.c.job_id == job_id, jobs.c.owner_epoch == epoch)
            .values(owner_epoch=jobs.c.owner_epoch)
        )
        if res.rowcount == 0:
            raise self._fenced(conn, job_id, epoch, action)

    # ------------------------------------------------------------------ jobs

    def create_job(self, job: JobRecord) -> bool:
        values = {f.name: getattr(job, f.name) for f in dc_fields(JobRecord)}
        values["status"] = str(values["status"])
        values["created_at"] = values["created_at"] or time.time()
        values["updated_at"] = values["updated_at"] or values["created_at"]
        with self._write() as conn:
            if not self._insert_if_absent(conn, jobs, values):
                return False
            self._append_feed(conn, [self._change(jobs, values, values["owner_epoch"])])
        return True

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._read() as conn:
            row = conn.execute(select(jobs).where(jobs.c.job_id == job_id)).first()
        return _job(row) if row is not None else None

    def list_jobs(self, status: str | None = None, limit: int | None = None) -> list[JobRecord]:
        stmt = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.job_id.desc())
        if status is not None:
            stmt = stmt.where(jobs.c.status == str(status))
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as conn:
            return [_job(r) for r in conn.execute(stmt)]

    def list_jobs_unfinished(self) -> list[JobRecord]:
        stmt = (select(jobs).where(jobs.c.status.not_in([str(s) for s in sorted(TERMINAL_STATUSES)]))
                .order_by(jobs.c.created_at, jobs.c.job_id))
        with self._read() as conn:
            return [_job(r) for r in conn.execute(stmt)]

    def transition_job(
        self, job_id: str, *, epoch: int, from_status: str | tuple[str, ...], to_status: str, **fields: Any
    ) -> JobRecord:
        froms = (str(from_status),) if isinstance(from_status, str) else tuple(str(s) for s in from_status)
        unknown = sorted(set(fields) - _JOB_COLUMNS)
        protected = sorted(set(fields) & _PROTECTED_JOB_COLUMNS)
        if unknown or protected:
            raise ValueError(f"transition_job cannot set {unknown + protected} (not settable job fields)")
        values = {**fields, "status": str(to_status), "updated_at": time.time()}
        action = f"move job {job_id} to {to_status}"
        with self._write() as conn:
            res = conn.execute(
                update(jobs)
                .where(jobs.c.job_id == job_id, jobs.c.owner_epoch == epoch, jobs.c.status.in_(froms))
                .values(**values)
            )
            if res.rowcount == 0:
                raise self._fenced(conn, job_id, epoch, action, froms)
            row = self._row(conn, jobs, job_id=job_id)
            assert row is not None
            self._append_feed(conn, [self._change(jobs, row, epoch)])
        return JobRecord(**row)

    def claim_job(self, job_id: str, *, region: str, epoch: int) -> JobRecord:
        with self._write() as conn:
            res = conn.execute(
                update(jobs)
                .where(jobs.c.job_id == job_id, jobs.c.owner_epoch <= epoch)
                .values(owner_region=region, owner_epoch=epoch, updated_at=time.time())
            )
            if res.rowcount == 0:
                job = self._row(conn, jobs, job_id=job_id)
                why = (f"job {job_id} does not exist" if job is None else
                       f"job {job_id} is owned by {job['owner_region'] or '?'} under higher epoch "
                       f"{job['owner_epoch']}")
                raise FencedOut(f"cannot claim job {job_id} for {region} under epoch {epoch}: {why}")
            row = self._row(conn, jobs, job_id=job_id)
            assert row is not None
            self._append_feed(conn, [self._change(jobs, row, epoch)])
        return JobRecord(**row)

    # ------------------------------------------------------------------ chunks

    def add_chunks(self, job_id: str, chunks: list[ChunkRecord], *, epoch: int) -> None:
        for c in chunks:
            if c.job_id != job_id:
                raise ValueError(f"add_chunks for job {job_id} got a chunk of job {c.job_id}")
        with self._write() as conn:
            self._fence(conn, job_id, epoch, f"add chunks to job {job_id}")
            stmt = select(chunks_table.c.idx).where(chunks_table.c.job_id == job_id)
            present = set(conn.execute(stmt).scalars())
            new: list[dict[str, Any]] = []
            for c in chunks:
                if c.idx in present:
                    continue
                present.add(c.idx)
                values = {f.name: getattr(c, f.name) for f in dc_fields(ChunkRecord)}
                values["status"] = str(values["status"])
                new.append(values)
            _bulk_insert_dicts(conn, chunks_table, new)
            self._append_feed(conn, [self._change(chunks_table, v, epoch) for v in new])

    def list_chunks(self, job_id: str) -> list[ChunkRecord]:
        stmt = select(chunks_table).where(chunks_table.c.job_id == job_id).order_by(chunks_table.c.idx)
        with self._read() as conn:
            return [_chunk(r) for r in conn.execute(stmt)]

    def start_chunk(self, job_id: str, idx: int, *, epoch: int) -> int:
        with self._write() as conn:
            self._fence(conn, job_id, epoch, f"start chunk {idx} of job {job_id}")
            res = conn.execute(
                update(chunks_table)
                .where(chunks_table.c.job_id == job_id, chunks_table.c.idx == idx)
                .values(attempts=chunks_table.c.attempts + 1)
            )
            if res.rowcount == 0:
                raise RegionflowError(f"cannot start chunk {idx} of job {job_id}: no such chunk")
            row = self._row(conn, chunks_table, job_id=job_id, idx=idx)
            assert row is not None
            self._append_feed(conn, [self._change(chunks_table, row, epoch)])
        return row["attempts"]

    def start_chunks(self, job_id: str, idxs: list[int], *, epoch: int) -> dict[int, int]:
        if not idxs:
            return {}
        with self._write() as conn:
            self._fence(conn, job_id, epoch, f"start {len(idxs)} chunk(s) of job {job_id}")
            c = chunks_table.c
            conn.execute(update(chunks_table).where(c.job_id == job_id, c.idx == bindparam("i"))
                         .values(attempts=c.attempts + 1), [{"i": i} for i in idxs])
            rows = [dict(r._mapping) for r in conn.execute(
                select(chunks_table).where(c.job_id == job_id, c.idx.in_(idxs)).order_by(c.idx))]
            if len(rows) != len(set(idxs)):
                missing = sorted(set(idxs) - {r["idx"] for r in rows})
                raise RegionflowError(f"cannot start chunks {missing[:5]} of job {job_id}: no such chunk")
            self._append_feed(conn, [self._change(chunks_table, r, epoch) for r in rows])
        return {r["idx"]: r["attempts"] for r in rows}

    def complete_chunk(
        self,
        job_id: str,
        idx: int,
        *,
        epoch: int,
        out_key: str,
        out_etag: str,
        rows_ok: int,
        rows_rejected: int,
        rejects: list[RejectRecord],
    ) -> None:
        rows: list[tuple[str, int, int, str, str]] = []
        for r in rejects:
            if r.job_id != job_id or r.chunk_idx != idx:
                raise ValueError(f"complete_chunk for job {job_id} chunk {idx} got a reject of job "
                                 f"{r.job_id} chunk {r.chunk_idx}")
            rows.append((job_id, int(r.row_no), idx, r.raw, r.reason))
        table = rejects_table
        with self._write() as conn:
            self._fence(conn, job_id, epoch, f"complete chunk {idx} of job {job_id}")
            of_chunk = (table.c.job_id == job_id, table.c.chunk_idx == idx)
            previous = set(conn.execute(select(table.c.row_no).where(*of_chunk)).scalars())
            if previous:
                conn.execute(delete(table).where(*of_chunk))
            _bulk_insert(conn, table, _REJECT_COLUMNS, rows)
            res = conn.execute(
                update(chunks_table)
                .where(chunks_table.c.job_id == job_id, chunks_table.c.idx == idx)
                .values(status=str(ChunkStatus.DONE), out_key=out_key, out_etag=out_etag, rows_ok=rows_ok,
                        rows_rejected=rows_rejected)
            )
            if res.rowcount == 0:
                raise RegionflowError(f"cannot complete chunk {idx} of job {job_id}: no such chunk")
            chunk_row = self._row(conn, chunks_table, job_id=job_id, idx=idx)
            assert chunk_row is not None
            previous.difference_update(row[1] for row in rows)
            feed = [self._deletion(table, f"{job_id}/{row_no}", epoch) for row_no in sorted(previous)]
            # Reject row images are built by hand: the same JSON as _dumps gives, several times faster.
            head = f'{{"job_id":{encode_basestring(job_id)},"row_no":'
            mid = f',"chunk_idx":{int(idx)},"raw":'
            feed.extend(
                ("rejects", f"{job_id}/{row_no}",
                 f'{head}{row_no}{mid}{encode_basestring(raw)},"reason":{encode_basestring(reason)}}}', epoch)
                for _, row_no, _, raw, reason in rows
            )
            feed.append(self._change(chunks_table, chunk_row, epoch))
            self._append_feed(conn, feed)

    # ------------------------------------------------------------------ rejects

    def list_rejects(self, job_id: str, limit: int | None = None, offset: int = 0) -> list[RejectRecord]:
        table = rejects_table
        stmt = select(table).where(table.c.job_id == job_id).order_by(table.c.row_no)
        if limit is not None:
            stmt = stmt.limit(limit)
        if offset:
            stmt = stmt.offset(offset)
        with self._read() as conn:
            return [RejectRecord(**r._mapping) for r in conn.execute(stmt)]

    def count_rejects(self, job_id: str) -> int:
        stmt = select(func.count()).select_from(rejects_table).where(rejects_table.c.job_id == job_id)
        with self._read() as conn:
            return conn.execute(stmt).scalar_one()

    # ------------------------------------------------------------------ reference data

    def load_reference(self, table: str, key_column: str, columns: list[str], parts: list[str],
                       rows: int) -> ReferenceInfo:
        meta = {"key_column": key_column, "columns": _dumps(list(columns)), "rows": rows, "parts": len(parts),
                "loaded_at": time.time()}
        bump = (
            update(reference_tables)
            .where(reference_tables.c.name == table)
            .values(revision=reference_tables.c.revision + 1, **meta)
        )
        with self._write() as conn:
            # The update (or the insert of revision 1) locks the table's row until commit, so concurrent
            # loads of one table serialise; an insert that loses a race becomes the update.
            first = {"name": table, "revision": 1, **meta}
            if (conn.execute(bump).rowcount == 0
                    and not self._insert_if_absent(conn, reference_tables, first)
                    and conn.execute(bump).rowcount == 0):
                raise RegionflowError(f"cannot load reference table {table!r}: it changed concurrently")
            old = set(conn.execute(
                select(reference_parts.c.part_no).where(reference_parts.c.table_name == table)).scalars())
            conn.execute(delete(reference_parts).where(reference_parts.c.table_name == table))
            part_rows = [{"table_name": table, "part_no": i, "csv": csv} for i, csv in enumerate(parts)]
            _bulk_insert_dicts(conn, reference_parts, part_rows)
            info_row = self._row(conn, reference_tables, name=table)
            assert info_row is not None
            gone = sorted(n for n in old if n >= len(parts))
            feed = [self._deletion(reference_parts, f"{table}/{n}", 0) for n in gone]
            feed.extend(self._change(reference_parts, r, 0) for r in part_rows)
            feed.append(self._change(reference_tables, info_row, 0))
            self._append_feed(conn, feed)
        return ReferenceInfo(table=table, key_column=key_column, columns=list(columns), rows=rows,
                             parts=len(parts), revision=info_row["revision"], loaded_at=info_row["loaded_at"])

    def reference_info(self, table: str) -> ReferenceInfo | None:
        with self._read() as conn:
            row = conn.execute(select(reference_tables).where(reference_tables.c.name == table)).first()
        return _reference_info(row) if row is not None else None

    def reference_parts(self, table: str) -> list[str]:
        stmt = (select(reference_parts.c.csv).where(reference_parts.c.table_name == table)
                .order_by(reference_parts.c.part_no))
        with self._read() as conn:
            return list(conn.execute(stmt).scalars())

    # ------------------------------------------------------------------ notifications

    def record_notification(self, rec: NotificationRecord) -> bool:
        values = {f.name: getattr(rec, f.name) for f in dc_fields(NotificationRecord)}
        values["recipients"] = _dumps(list(rec.recipients))
        values["created_at"] = values["created_at"] or time.time()
        with self._write() as conn:
            if not self._insert_if_absent(conn, notifications, values):
                return False
            self._append_feed(conn, [self._change(notifications, values, 0)])
        return True

    def mark_notification_sent(self, job_id: str) -> None:
        """Idempotent: a notification already marked sent keeps its first sent_at."""
        with self._write() as conn:
            res = conn.execute(
                update(notifications)
                .where(notifications.c.job_id == job_id, notifications.c.status != "sent")
                .values(status="sent", sent_at=time.time())
            )
            row = self._row(conn, notifications, job_id=job_id)
            if row is None:
                raise RegionflowError(f"cannot mark the notification of job {job_id} sent: none was recorded")
            if res.rowcount:
                self._append_feed(conn, [self._change(notifications, row, 0)])

    def get_notification(self, job_id: str) -> NotificationRecord | None:
        with self._read() as conn:
            row = conn.execute(select(notifications).where(notifications.c.job_id == job_id)).first()
        return _notification(row) if row is not None else None

    def list_notifications(self) -> list[NotificationRecord]:
        stmt = select(notifications).order_by(notifications.c.created_at, notifications.c.job_id)
        with self._read() as conn:
            return [_notification(r) for r in conn.execute(stmt)]

    # ------------------------------------------------------------------ change feed

    def feed_since(self, seq: int, limit: int = 1000, kind: str | None = None) -> list[Change]:
        stmt = select(change_feed).where(change_feed.c.seq > seq)
        if kind == "objects":
            stmt = stmt.where(change_feed.c.table_name == OBJECTS_FEED)
        elif kind == "state":
            stmt = stmt.where(change_feed.c.table_name != OBJECTS_FEED)
        elif kind is not None:
            raise ValueError(f"kind must be 'objects', 'state' or None, not {kind!r}")
        stmt = stmt.order_by(change_feed.c.seq).limit(limit)
        with self._read() as conn:
            return [
                Change(seq=m["seq"], table=m["table_name"], key=m["key"],
                       row=json.loads(m["row_image"]) if m["row_image"] is not None else None,
                       hlc=m["hlc"], epoch=m["epoch"], origin=m["origin"], created_at=m["created_at"])
                for m in (r._mapping for r in conn.execute(stmt))
            ]

    def feed_head(self) -> int:
        with self._read() as conn:
            return conn.execute(select(func.coalesce(func.max(change_feed.c.seq), 0))).scalar_one()

    def feed_stats(self, since: int) -> dict[str, Any]:
        # The tail is scanned once by primary-key range, grouped by the few table names.
        tail = (select(change_feed.c.table_name, func.count(), func.min(change_feed.c.created_at),
                       func.max(change_feed.c.seq))
                .where(change_feed.c.seq > since).group_by(change_feed.c.table_name))
        stats: dict[str, Any] = {"head": 0, OBJECTS_FEED: {"count": 0, "oldest": None},
                                 "state": {"count": 0, "oldest": None}}
        with self._read() as conn:
            head = conn.execute(select(func.coalesce(func.max(change_feed.c.seq), 0))).scalar_one()
            for name, count, oldest, top in conn.execute(tail):
                kind = stats[OBJECTS_FEED if name == OBJECTS_FEED else "state"]
                kind["count"] += count
                kind["oldest"] = oldest if kind["oldest"] is None else min(kind["oldest"], oldest)
                head = max(head, top)  # PostgreSQL reads each statement afresh: keep head >= the tail
        stats["head"] = head
        return stats

    def record_object_change(self, key: str, info: dict[str, Any] | None, epoch: int = 0) -> None:
        image = _dumps(info) if info is not None else None
        with self._write() as conn:
            self._append_feed(conn, [(OBJECTS_FEED, key, image, epoch)])

    # ------------------------------------------------------------------ replication

    def apply_change(self, change: Change) -> bool:
        return self.apply_changes([change]) == 1

    def apply_changes(self, changes: list[Change]) -> int:
        self._check_changes(changes)
        if not changes:
            return 0
        with self._write() as conn:
            return self._apply(conn, changes)

    def apply_changes_and_checkpoint(self, source: str, changes: list[Change], seq: int) -> int:
        self._check_changes(changes)
        with self._write() as conn:
            applied = self._apply(conn, changes) if changes else 0
            self._update_link(conn, source, seq=seq, applied=True)
        return applied

    def get_checkpoint(self, source: str) -> int:
        return int(self.replication_link(source)["seq"])

    def set_checkpoint(self, source: str, seq: int) -> None:
        with self._write() as conn:
            self._update_link(conn, source, seq=seq, applied=True)

    def set_paused(self, source: str, paused: bool) -> None:
        with self._write() as conn:
            self._update_link(conn, source, paused=paused)

    def is_paused(self, source: str) -> bool:
        return bool(self.replication_link(source)["paused"])

    def replication_link(self, source: str) -> dict[str, Any]:
        with self._read() as conn:
            row = self._row(conn, replication_links, source=source)
        if row is None:
            return {"source": source, "seq": 0, "paused": False, "applied_at": None, "updated_at": None}
        return {**row, "paused": bool(row["paused"])}

    @staticmethod
    def _update_link(conn: Connection, source: str, *, seq: int | None = None, paused: bool | None = None,
                     applied: bool = False) -> None:
        """Create or update source's link: seq only moves forward; applied records now as applied_at."""
        now = time.time()
        link = replication_links
        stmt = _dialect_insert(conn)(link).values(source=source, seq=max(seq or 0, 0), paused=int(bool(paused)),
                                                  updated_at=now, applied_at=now if applied else None)
        changes: dict[str, Any] = {"updated_at": now}
        if seq is not None:
            changes["seq"] = case((stmt.excluded.seq > link.c.seq, stmt.excluded.seq), else_=link.c.seq)
        if paused is not None:
            changes["paused"] = stmt.excluded.paused
        if applied:
            changes["applied_at"] = now
        conn.execute(stmt.on_conflict_do_update(index_elements=["source"], set_=changes))

    @staticmethod
    def _check_changes(changes: list[Change]) -> None:
        for c in changes:
            if c.table == OBJECTS_FEED:
                raise ValueError(f"change {c.seq} from {c.origin} ({c.key}) is an object change: the replicator "
                                 f"copies objects, the state store does not apply them")
            if c.table not in FEED_TABLES:
                raise ValueError(f"change {c.seq} from {c.origin}: unknown table {c.table!r}")

    @staticmethod
    def _locked(conn: Connection, table: Table, value: str, keys: set[str]) -> dict[str, Any]:
        """{primary key: the value column} of the rows with those keys, locked until commit."""
        (pk,) = table.primary_key.columns
        found: dict[str, Any] = {}
        for batch in _batches(keys):
            stmt = select(pk, table.c[value]).where(pk.in_(batch)).order_by(pk).with_for_update()
            found.update((k, v) for k, v in conn.execute(stmt))
        return found

    @staticmethod
    def _versions(conn: Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int]]:
        """{(table, key): (epoch, hlc)} of the rows' latest recorded writes."""
        found: dict[tuple[str, str], tuple[int, int]] = {}
        v = row_versions
        for name in {t for t, _ in keys}:
            for batch in _batches({k for t, k in keys if t == name}):
                stmt = select(v.c.key, v.c.epoch, v.c.hlc).where(v.c.table_name == name, v.c.key.in_(batch))
                found.update(((name, k), (e, h)) for k, e, h in conn.execute(stmt))
        return found

    def _apply(self, conn: Connection, changes: list[Change]) -> int:
        """Decide every change against the local state (as the earlier changes of the batch left it), then
        write the survivors: the last image of each row, one bulk upsert (and delete) per table."""
        self._clock.update(max(c.hlc for c in changes))
        by_table: dict[str, set[str]] = {}
        for c in changes:
            by_table.setdefault(c.table, set()).add(c.key)
        job_ids = by_table.get("jobs", set()) | {_job_of(c) for c in changes if c.table in ("chunks", "rejects")}
        job_epoch: dict[str, int | None] = self._locked(conn, jobs, "owner_epoch", job_ids)
        note_status: dict[str, str | None] = self._locked(conn, notifications, "status",
                                                          by_table.get("notifications", set()))
        ref_names = by_table.get("reference_tables", set()) | {
            _reference_of(c) for c in changes if c.table == "reference_parts"}
        self._locked(conn, reference_tables, "revision", ref_names)
        wanted = {(c.table, c.key) for c in changes if c.table in VERSIONED_TABLES}
        versions = self._versions(conn, wanted | {("reference_tables", name) for name in ref_names})

        def newer(c: Change) -> bool:
            """Last writer wins: a higher epoch first, then a higher hlc (no version: nothing to lose to)."""
            stored = versions.get((c.table, c.key))
            return stored is None or (c.epoch, c.hlc) > stored

        pending: dict[str, dict[str, dict[str, Any] | None]] = {}  # table -> key -> last image (None: delete)
        new_versions: dict[tuple[str, str], tuple[Any, ...]] = {}
        replaced: dict[str, int] = {}  # reference table -> part count, when its row came after its parts
        applied = 0
        for c in changes:
            name, row = c.table, c.row
            if name == "jobs":
                local = job_epoch.get(c.key)
                epoch = int(row["owner_epoch"]) if row is not None else c.epoch
                stored = versions.get((name, c.key))
                ok = (local is None or epoch > local
                      or (epoch == local and (stored is None or c.hlc > stored[1])))
                if ok:
                    job_epoch[c.key] = epoch if row is not None else None
            elif name in ("chunks", "rejects"):
                local = job_epoch.get(_job_of(c))
                ok = (local is None or c.epoch >= local) and (name == "rejects" or newer(c))
            elif name == "notifications":
                local_status = note_status.get(c.key)
                status = row.get("status") if row is not None else None
                if local_status == "sent" and status == "sending":
                    ok = False  # delivered stays delivered
                else:  # and a delivery recorded elsewhere is never undone by a local "sending"
                    ok = (local_status == "sending" and status == "sent") or newer(c)
                if ok:
                    note_status[c.key] = status
            elif name in ("reference_tables", "plan_executions"):
                ok = newer(c)
            else:  # reference_parts: a load's parts precede its reference_tables row, with lower hlcs
                stored = versions.get(("reference_tables", _reference_of(c)))
                ok = stored is None or c.hlc > stored[1]  # so a part of a load that lost is dropped too
            if not ok:
                continue
            applied += 1
            pending.setdefault(name, {})[c.key] = row
            if name == "reference_tables" and row is not None:
                replaced[c.key] = int(row["parts"])
            elif name == "reference_parts":  # a later load's parts: its own row (next batch) will clean up
                replaced.pop(_reference_of(c), None)
            if name in VERSIONED_TABLES:
                versions[(name, c.key)] = (c.epoch, c.hlc)
                new_versions[(name, c.key)] = (name, c.key, c.hlc, c.epoch, c.origin)

        for name, images in pending.items():
            table = FEED_TABLES[name]
            gone = [_key_values(table, key) for key, image in images.items() if image is None]
            if gone:
                pk = [c.name for c in table.primary_key.columns]
                stmt = delete(table).where(*(table.c[n] == bindparam(f"k_{n}") for n in pk))
                conn.execute(stmt, [{f"k_{n}": v for n, v in key.items()} for key in gone])
            columns = [col.name for col in table.columns]
            _bulk_upsert(conn, table, columns, [tuple(image.get(col) for col in columns)
                                                for image in images.values() if image is not None])
        # A reference table that was replaced keeps only its own parts (a local load may have had more).
        beyond = [{"t": name, "n": parts} for name, parts in replaced.items()]
        if beyond:
            p = reference_parts.c
            conn.execute(delete(reference_parts).where(p.table_name == bindparam("t"), p.part_no >= bindparam("n")),
                         beyond)
        _bulk_upsert(conn, row_versions, _VERSION_COLUMNS, list(new_versions.values()))
        return applied

    # ------------------------------------------------------------------ plan executions

    def save_execution(self, record: dict[str, Any]) -> None:
        row = {"execution_id": record["execution_id"], "data": _dumps(record),
               "started_at": float(record.get("started_at") or time.time())}
        with self._write() as conn:
            _bulk_upsert(conn, plan_executions, ["execution_id", "data", "started_at"],
                         [(row["execution_id"], row["data"], row["started_at"])])
            self._append_feed(conn, [self._change(plan_executions, row, 0)])

    def get_execution(self, execution_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            data = conn.execute(select(plan_executions.c.data)
                                .where(plan_executions.c.execution_id == execution_id)).scalar()
        return json.loads(data) if data is not None else None

    def list_executions(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._read() as conn:
            rows = conn.execute(select(plan_executions.c.data)
                                .order_by(plan_executions.c.started_at.desc()).limit(limit)).scalars()
            return [json.loads(d) for d in rows]

    def close(self) -> None:
        self._engine.dispose()
