"""SqlStateStore: the StateStore on SQLAlchemy Core, one code path for SQLite (WAL) and PostgreSQL.

The store is assembled from one mixin per area, all on StoreCore (core.py: engine, clock, transactions,
the change-feed append every write ends with):

- jobs.py: jobs, chunks and rejects, fenced by the job's owner epoch;
- reference.py: reference tables;
- records.py: notifications and plan executions;
- feed.py: the change feed, replication links, and applying another region's changes, decided by the
  pure rules in apply_rule.py.

sql.py holds the engines and the dialect helpers.
"""

from __future__ import annotations

from regionflow.state.feed import FeedMixin
from regionflow.state.jobs import JobsMixin
from regionflow.state.records import RecordsMixin
from regionflow.state.reference import ReferenceMixin
from regionflow.state.sql import SQLITE_BUSY_TIMEOUT_MS, engine_url

__all__ = ["SQLITE_BUSY_TIMEOUT_MS", "SqlStateStore", "engine_url"]


class SqlStateStore(JobsMixin, ReferenceMixin, RecordsMixin, FeedMixin):
    """The StateStore for sqlite:/// and postgresql:// URLs."""

    def __repr__(self) -> str:
        url = self._engine.url.render_as_string(hide_password=True)
        return f"SqlStateStore({url!r}, region={self.region!r})"
