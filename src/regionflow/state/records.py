"""RecordsMixin: job notifications and region-switch plan executions."""

from __future__ import annotations

import json
import time
from dataclasses import fields as dc_fields
from typing import Any

from sqlalchemy import Connection, select, update

from regionflow.errors import RegionflowError
from regionflow.state.base import NotificationRecord
from regionflow.state.core import FeedEntry, StoreCore, change_entry
from regionflow.state.schema import notifications, plan_executions
from regionflow.state.sql import bulk_upsert, dumps, fetch_row, insert_if_absent


def mark_sent(conn: Connection, job_id: str) -> list[FeedEntry]:
    """In conn's write transaction: mark the job's notification sent (a notification already sent keeps its
    first sent_at); the feed entry of the change, none when there was none. RegionflowError if the job has
    no notification."""
    res = conn.execute(
        update(notifications)
        .where(notifications.c.job_id == job_id, notifications.c.status != "sent")
        .values(status="sent", sent_at=time.time())
    )
    row = fetch_row(conn, notifications, job_id=job_id)
    if row is None:
        raise RegionflowError(f"cannot mark the notification of job {job_id} sent: none was recorded")
    return [change_entry(notifications, row, 0)] if res.rowcount else []


def _notification(row: Any) -> NotificationRecord:
    m = dict(row._mapping)
    m["recipients"] = json.loads(m["recipients"])
    return NotificationRecord(**m)


class RecordsMixin(StoreCore):
    """The notifications and plan-executions part of the StateStore."""

    # ------------------------------------------------------------------ notifications

    def record_notification(self, rec: NotificationRecord) -> bool:
        """Record the job's notification unless one exists; True when recorded."""
        values = {f.name: getattr(rec, f.name) for f in dc_fields(NotificationRecord)}
        values["recipients"] = dumps(list(rec.recipients))
        values["created_at"] = values["created_at"] or time.time()
        with self._write() as conn:
            if not insert_if_absent(conn, notifications, values):
                return False
            self._append_feed(conn, [change_entry(notifications, values, 0)])
        return True

    def mark_notification_sent(self, job_id: str) -> None:
        """Idempotent: a notification already marked sent keeps its first sent_at."""
        with self._write() as conn:
            self._append_feed(conn, mark_sent(conn, job_id))

    def get_notification(self, job_id: str) -> NotificationRecord | None:
        """The job's notification, or None."""
        with self._read() as conn:
            row = conn.execute(select(notifications).where(notifications.c.job_id == job_id)).first()
        return _notification(row) if row is not None else None

    def list_notifications(self) -> list[NotificationRecord]:
        """All notifications, oldest first."""
        stmt = select(notifications).order_by(notifications.c.created_at, notifications.c.job_id)
        with self._read() as conn:
            return [_notification(r) for r in conn.execute(stmt)]

    # ------------------------------------------------------------------ plan executions

    def save_execution(self, record: dict[str, Any]) -> None:
        """Insert or replace the plan execution record (a JSON document keyed by execution_id)."""
        row = {"execution_id": record["execution_id"], "data": dumps(record),
               "started_at": float(record.get("started_at") or time.time())}
        with self._write() as conn:
            bulk_upsert(conn, plan_executions, ["execution_id", "data", "started_at"],
                        [(row["execution_id"], row["data"], row["started_at"])])
            self._append_feed(conn, [change_entry(plan_executions, row, 0)])

    def get_execution(self, execution_id: str) -> dict[str, Any] | None:
        """The plan execution record, or None."""
        with self._read() as conn:
            data = conn.execute(select(plan_executions.c.data)
                                .where(plan_executions.c.execution_id == execution_id)).scalar()
        return json.loads(data) if data is not None else None

    def list_executions(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest plan execution records, newest first."""
        with self._read() as conn:
            rows = conn.execute(select(plan_executions.c.data)
                                .order_by(plan_executions.c.started_at.desc()).limit(limit)).scalars()
            return [json.loads(d) for d in rows]
