"""FeedMixin: reading the change feed, the replication links (checkpoints, pause flags), and applying
changes from another region's feed.

Every feed append of a last-writer-wins row also records the row's version in row_versions (see
StoreCore._append_feed), and so does applying a change. An apply decides each change against those
versions and the local job's owner epoch (apply_rule), writes the surviving images with one bulk upsert
per table, and appends nothing to the feed. It locks the local job, notification and reference-table rows
it decides on (PostgreSQL: SELECT ... FOR UPDATE; SQLite writers hold the database lock).
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import Connection, Select, Table, bindparam, case, delete, func, select

from regionflow.state.apply_rule import (
    Version,
    job_row_wins,
    job_wins,
    lww_wins,
    notification_wins,
    reference_part_wins,
)
from regionflow.state.base import Change
from regionflow.state.core import VERSION_COLUMNS, StoreCore
from regionflow.state.schema import (
    FEED_TABLES,
    OBJECTS_FEED,
    VERSIONED_TABLES,
    change_feed,
    jobs,
    notifications,
    reference_parts,
    reference_tables,
    replication_links,
    row_versions,
    stored_objects,
)
from regionflow.state.sql import batches, bulk_upsert, dialect_insert, dumps, fetch_row


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


def _update_link(conn: Connection, source: str, *, seq: int | None = None, paused: bool | None = None,
                 applied: bool = False) -> None:
    """Create or update source's link: seq only moves forward; applied records now as applied_at."""
    now = time.time()
    link = replication_links
    stmt = dialect_insert(conn)(link).values(source=source, seq=max(seq or 0, 0), paused=int(bool(paused)),
                                             updated_at=now, applied_at=now if applied else None)
    changes: dict[str, Any] = {"updated_at": now}
    if seq is not None:
        changes["seq"] = case((stmt.excluded.seq > link.c.seq, stmt.excluded.seq), else_=link.c.seq)
    if paused is not None:
        changes["paused"] = stmt.excluded.paused
    if applied:
        changes["applied_at"] = now
    conn.execute(stmt.on_conflict_do_update(index_elements=["source"], set_=changes))


_FORGET_STORED = delete(stored_objects).where(stored_objects.c.key == bindparam("key"))  # built once: per object


def _note_stored(conn: Connection, key: str, version_id: str | None) -> None:
    if version_id is None:
        conn.execute(_FORGET_STORED, {"key": key})
        return
    bulk_upsert(conn, stored_objects, ("key", "version_id"), [(key, version_id)])


def _check_changes(changes: list[Change]) -> None:
    for c in changes:
        if c.table == OBJECTS_FEED:
            raise ValueError(f"change {c.seq} from {c.origin} ({c.key}) is an object change: the replicator "
                             f"copies objects, the state store does not apply them")
        if c.table not in FEED_TABLES:
            raise ValueError(f"change {c.seq} from {c.origin}: unknown table {c.table!r}")


def _locked(conn: Connection, table: Table, value: str, keys: set[str]) -> dict[str, Any]:
    """{primary key: the value column} of the rows with those keys, locked until commit."""
    (pk,) = table.primary_key.columns
    found: dict[str, Any] = {}
    for batch in batches(keys):
        stmt = select(pk, table.c[value]).where(pk.in_(batch)).order_by(pk).with_for_update()
        found.update((k, v) for k, v in conn.execute(stmt))
    return found


def _versions(conn: Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Version]:
    """{(table, key): version} of the rows' latest recorded writes."""
    found: dict[tuple[str, str], Version] = {}
    v = row_versions
    for name in {t for t, _ in keys}:
        for batch in batches({k for t, k in keys if t == name}):
            stmt = select(v.c.key, v.c.epoch, v.c.hlc).where(v.c.table_name == name, v.c.key.in_(batch))
            found.update(((name, k), Version(e, h)) for k, e, h in conn.execute(stmt))
    return found


class FeedMixin(StoreCore):
    """The change-feed and replication part of the StateStore."""

    # ------------------------------------------------------------------ change feed

    def feed_since(self, seq: int, limit: int = 1000, kind: str | None = None) -> list[Change]:
        """Up to limit changes after seq, in feed order; kind 'objects' or 'state' picks one kind."""
        with self._read() as conn:
            return [
                Change(seq=m["seq"], table=m["table_name"], key=m["key"],
                       row=json.loads(m["row_image"]) if m["row_image"] is not None else None,
                       hlc=m["hlc"], epoch=m["epoch"], origin=m["origin"], created_at=m["created_at"])
                for m in (r._mapping for r in conn.execute(_feed_page(seq, limit, kind)))
            ]

    def feed_page_json(self, seq: int, limit: int = 1000, kind: str | None = None) -> str:
        """feed_since's changes as the JSON text of a list of Change objects (the feed endpoint's answer):
        each stored row image is spliced in as it is, never parsed and encoded again."""
        with self._read() as conn:
            rows = conn.execute(_feed_page(seq, limit, kind)).all()
        return "[" + ",".join(
            f'{{"seq":{seq_},"table":{_text(table)},"key":{_text(key)},"row":{image or "null"},'
            f'"hlc":{hlc},"epoch":{epoch},"origin":{_text(origin)},"created_at":{float(created)!r}}}'
            for seq_, table, key, image, hlc, epoch, origin, created in rows) + "]"

    def feed_head(self) -> int:
        """The sequence number of the last change (0 for an empty feed)."""
        with self._read() as conn:
            return conn.execute(_FEED_HEAD).scalar_one()

    def feed_stats(self, since: int) -> dict[str, Any]:
        """The feed head, and count and oldest created_at of the object and state changes after since."""
        # The tail is scanned once by primary-key range, grouped by the few table names.
        tail = (select(change_feed.c.table_name, func.count(), func.min(change_feed.c.created_at),
                       func.max(change_feed.c.seq))
                .where(change_feed.c.seq > since).group_by(change_feed.c.table_name))
        stats: dict[str, Any] = {"head": 0, OBJECTS_FEED: {"count": 0, "oldest": None},
                                 "state": {"count": 0, "oldest": None}}
        with self._read() as conn:
            head = conn.execute(_FEED_HEAD).scalar_one()
            for name, count, oldest, top in conn.execute(tail):
                kind = stats[OBJECTS_FEED if name == OBJECTS_FEED else "state"]
                kind["count"] += count
                kind["oldest"] = oldest if kind["oldest"] is None else min(kind["oldest"], oldest)
                head = max(head, top)  # PostgreSQL reads each statement afresh: keep head >= the tail
        stats["head"] = head
        return stats

    def record_object_change(self, key: str, info: dict[str, Any] | None, epoch: int = 0) -> None:
        """Append an object put (info) or delete (None) to the feed."""
        image = dumps(info) if info is not None else None
        with self._write() as conn:
            if info is None or info.get("version_id"):
                _note_stored(conn, key, info["version_id"] if info is not None else None)
            self._append_feed(conn, [(OBJECTS_FEED, key, image, epoch)])

    def note_stored_object(self, key: str, version_id: str | None) -> None:
        """Record that the object store holds key at version_id (None: not at all); nothing is fed."""
        with self._write() as conn:
            _note_stored(conn, key, version_id)

    def stored_versions(self, keys: list[str]) -> dict[str, str]:
        """{key: version id} of the keys the region knows its object store holds."""
        found: dict[str, str] = {}
        with self._read() as conn:
            for batch in batches(set(keys)):
                stmt = select(stored_objects.c.key, stored_objects.c.version_id).where(stored_objects.c.key.in_(batch))
                found.update((k, v) for k, v in conn.execute(stmt))
        return found

    # ------------------------------------------------------------------ replication links

    def get_checkpoint(self, source: str) -> int:
        """How far source's feed was applied (0: not at all)."""
        return int(self.replication_link(source)["seq"])

    def set_checkpoint(self, source: str, seq: int) -> None:
        """Move source's checkpoint forward to seq (never back)."""
        with self._write() as conn:
            _update_link(conn, source, seq=seq, applied=True)

    def set_paused(self, source: str, paused: bool) -> None:
        """Pause or resume replication from source."""
        with self._write() as conn:
            _update_link(conn, source, paused=paused)

    def is_paused(self, source: str) -> bool:
        """Whether replication from source is paused."""
        return bool(self.replication_link(source)["paused"])

    def replication_link(self, source: str) -> dict[str, Any]:
        """Source's link: seq, paused, applied_at, updated_at (defaults when there is none yet)."""
        with self._read() as conn:
            row = fetch_row(conn, replication_links, source=source)
        if row is None:
            return {"source": source, "seq": 0, "paused": False, "applied_at": None, "updated_at": None}
        return {**row, "paused": bool(row["paused"])}

    # ------------------------------------------------------------------ apply

    def apply_change(self, change: Change) -> bool:
        """Apply one change from another region's feed; True when it won."""
        return self.apply_changes([change]) == 1

    def apply_changes(self, changes: list[Change]) -> int:
        """Apply changes from another region's feed in one transaction; how many won."""
        _check_changes(changes)
        if not changes:
            return 0
        with self._write() as conn:
            return self._apply(conn, changes)

    def apply_changes_and_checkpoint(self, source: str, changes: list[Change], seq: int) -> int:
        """apply_changes and move source's checkpoint to seq in the same transaction."""
        _check_changes(changes)
        with self._write() as conn:
            applied = self._apply(conn, changes) if changes else 0
            _update_link(conn, source, seq=seq, applied=True)
        return applied

    def _apply(self, conn: Connection, changes: list[Change]) -> int:
        """Decide every change against the local state (as the earlier changes of the batch left it), then
        write the survivors: the last image of each row, one bulk upsert (and delete) per table."""
        self._clock.update(max(c.hlc for c in changes))
        by_table: dict[str, set[str]] = {}
        for c in changes:
            by_table.setdefault(c.table, set()).add(c.key)
        job_ids = by_table.get("jobs", set()) | {_job_of(c) for c in changes if c.table in ("chunks", "rejects")}
        job_epoch: dict[str, int | None] = _locked(conn, jobs, "owner_epoch", job_ids)
        note_status: dict[str, str | None] = _locked(conn, notifications, "status",
                                                     by_table.get("notifications", set()))
        ref_names = by_table.get("reference_tables", set()) | {
            _reference_of(c) for c in changes if c.table == "reference_parts"}
        _locked(conn, reference_tables, "revision", ref_names)
        wanted = {(c.table, c.key) for c in changes if c.table in VERSIONED_TABLES}
        versions = _versions(conn, wanted | {("reference_tables", name) for name in ref_names})

        pending: dict[str, dict[str, dict[str, Any] | None]] = {}  # table -> key -> last image (None: delete)
        new_versions: dict[tuple[str, str], tuple[Any, ...]] = {}
        replaced: dict[str, int] = {}  # reference table -> part count, when its row came after its parts
        applied = 0
        for c in changes:
            name, row = c.table, c.row
            incoming = Version(c.epoch, c.hlc)
            if name == "jobs":
                epoch = int(row["owner_epoch"]) if row is not None else c.epoch
                ok = job_wins(Version(epoch, c.hlc), owner_epoch=job_epoch.get(c.key),
                              stored=versions.get((name, c.key)))
                if ok:
                    job_epoch[c.key] = epoch if row is not None else None
            elif name in ("chunks", "rejects"):
                stored = None if name == "rejects" else versions.get((name, c.key))
                ok = job_row_wins(incoming, owner_epoch=job_epoch.get(_job_of(c)), stored=stored)
            elif name == "notifications":
                status = row.get("status") if row is not None else None
                ok = notification_wins(incoming, stored=versions.get((name, c.key)),
                                       local_status=note_status.get(c.key), status=status)
                if ok:
                    note_status[c.key] = status
            elif name in ("reference_tables", "plan_executions"):
                ok = lww_wins(incoming, versions.get((name, c.key)))
            else:  # reference_parts
                ok = reference_part_wins(c.hlc, versions.get(("reference_tables", _reference_of(c))))
            if not ok:
                continue
            applied += 1
            pending.setdefault(name, {})[c.key] = row
            if name == "reference_tables" and row is not None:
                replaced[c.key] = int(row["parts"])
            elif name == "reference_parts":  # a later load's parts: its own row (next batch) will clean up
                replaced.pop(_reference_of(c), None)
            if name in VERSIONED_TABLES:
                versions[(name, c.key)] = incoming
                new_versions[(name, c.key)] = (name, c.key, c.hlc, c.epoch, c.origin)

        for name, images in pending.items():
            table = FEED_TABLES[name]
            gone = [_key_values(table, key) for key, image in images.items() if image is None]
            if gone:
                pk = [c.name for c in table.primary_key.columns]
                stmt = delete(table).where(*(table.c[n] == bindparam(f"k_{n}") for n in pk))
                conn.execute(stmt, [{f"k_{n}": v for n, v in key.items()} for key in gone])
            columns = [col.name for col in table.columns]
            bulk_upsert(conn, table, columns, [tuple(image.get(col) for col in columns)
                                               for image in images.values() if image is not None])
        # A reference table that was replaced keeps only its own parts (a local load may have had more).
        beyond = [{"t": name, "n": parts} for name, parts in replaced.items()]
        if beyond:
            p = reference_parts.c
            conn.execute(delete(reference_parts).where(p.table_name == bindparam("t"), p.part_no >= bindparam("n")),
                         beyond)
        bulk_upsert(conn, row_versions, VERSION_COLUMNS, list(new_versions.values()))
        return applied


# Built once: every upload and every feed request reads the head.
_FEED_HEAD = select(func.coalesce(func.max(change_feed.c.seq), 0))
_FEED_PAGE_COLUMNS = (change_feed.c.seq, change_feed.c.table_name, change_feed.c.key, change_feed.c.row_image,
                      change_feed.c.hlc, change_feed.c.epoch, change_feed.c.origin, change_feed.c.created_at)
_text = json.JSONEncoder(ensure_ascii=False).encode


def _feed_page(seq: int, limit: int, kind: str | None) -> Select:
    """The SELECT of up to limit changes after seq, in feed order, of one kind or both."""
    stmt = select(*_FEED_PAGE_COLUMNS).where(change_feed.c.seq > seq)
    if kind == "objects":
        stmt = stmt.where(change_feed.c.table_name == OBJECTS_FEED)
    elif kind == "state":
        stmt = stmt.where(change_feed.c.table_name != OBJECTS_FEED)
    elif kind is not None:
        raise ValueError(f"kind must be 'objects', 'state' or None, not {kind!r}")
    return stmt.order_by(change_feed.c.seq).limit(limit)
