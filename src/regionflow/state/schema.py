"""The StateStore's tables (SQLAlchemy Core), portable between SQLite and PostgreSQL.

Only portable column types are used. JSON values (reference columns, notification recipients, change
row images) are stored as Text holding JSON. Every table's primary key also names its change-feed key:
the key columns' values joined with '/' (see feed_key). row_versions and replication_links are the
store's own bookkeeping for replication and are never fed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

# A 64-bit integer that is also SQLite's rowid alias when used as a single-column primary key.
_SEQ = BigInteger().with_variant(Integer(), "sqlite")

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", String, primary_key=True),
    Column("input_key", Text, nullable=False),
    Column("version_id", String, nullable=False),
    Column("input_etag", String, nullable=False),
    Column("pipeline", String, nullable=False),
    Column("status", String, nullable=False),
    Column("owner_region", String, nullable=False),
    Column("owner_epoch", BigInteger, nullable=False),
    Column("completing_region", String),
    Column("rows_in", BigInteger),
    Column("rows_ok", BigInteger),
    Column("rows_rejected", BigInteger),
    Column("chunks_total", Integer),
    Column("output_key", Text),
    Column("output_etag", String),
    Column("reason", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_jobs_status", "status"),
    Index("ix_jobs_created_at", "created_at"),
    # a new upload's trigger looks up the jobs of its key; a loader follows the jobs of its keys' prefix
    Index("ix_jobs_input_key", "input_key"),
)

chunks = Table(
    "chunks",
    metadata,
    Column("job_id", String, primary_key=True),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("object_key", Text, nullable=False),
    Column("first_row", BigInteger, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("status", String, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("out_key", Text),
    Column("out_etag", String),
    Column("rows_ok", BigInteger),
    Column("rows_rejected", BigInteger),
    # The chunk's byte range of its job's input (chunks are ranges of the input, not objects of their own).
    Column("byte_offset", BigInteger),
    Column("byte_length", BigInteger),
)

# Columns added after a table was first released: a store created before gets them at open (all nullable).
ADDED_COLUMNS = {"chunks": ("byte_offset", "byte_length")}

rejects = Table(
    "rejects",
    metadata,
    Column("job_id", String, primary_key=True),
    Column("row_no", BigInteger, primary_key=True, autoincrement=False),
    Column("chunk_idx", Integer, nullable=False),
    Column("raw", Text, nullable=False),
    Column("reason", Text, nullable=False),
    # by job (and chunk, for replacing one chunk's rejects); row order comes from the primary key
    Index("ix_rejects_job_chunk", "job_id", "chunk_idx"),
)

reference_tables = Table(
    "reference_tables",
    metadata,
    Column("name", String, primary_key=True),
    Column("key_column", String, nullable=False),
    Column("columns", Text, nullable=False),  # JSON list of column names
    Column("rows", BigInteger, nullable=False),
    Column("parts", Integer, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("loaded_at", Float, nullable=False),
)

reference_parts = Table(
    "reference_parts",
    metadata,
    Column("table_name", String, primary_key=True),
    Column("part_no", Integer, primary_key=True, autoincrement=False),
    Column("csv", Text, nullable=False),
)

notifications = Table(
    "notifications",
    metadata,
    Column("job_id", String, primary_key=True),
    Column("recipients", Text, nullable=False),  # JSON list of addresses
    Column("subject", Text, nullable=False),
    Column("link", Text, nullable=False),
    Column("rows_ok", BigInteger, nullable=False),
    Column("rows_rejected", BigInteger, nullable=False),
    Column("region", String, nullable=False),
    Column("channel", String, nullable=False),
    Column("status", String, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
)

change_feed = Table(
    "change_feed",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("table_name", String, nullable=False),
    Column("key", Text, nullable=False),
    Column("row_image", Text),  # JSON object of the row after the change; NULL for a delete
    Column("hlc", BigInteger, nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("origin", String, nullable=False),
    Column("created_at", Float, nullable=False),
    sqlite_autoincrement=True,  # never reuse a sequence number, even after the feed is pruned
)

# The latest write of each row of the last-writer-wins tables (VERSIONED_TABLES), local or replicated:
# the hlc it was written at, the epoch it was written under and the region it came from. Applying a
# replicated change compares against it (DESIGN §3).
row_versions = Table(
    "row_versions",
    metadata,
    Column("table_name", String, primary_key=True),
    Column("key", String, primary_key=True),
    Column("hlc", BigInteger, nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("origin", String, nullable=False),
)

# The version of each object this region's object store holds as far as the region knows: set when a put
# is fed (in the feed append's transaction) and when a replicated copy is applied, removed with deletes.
# The store watcher feeds what the store holds and this does not name (objects written around regionflow,
# or a put whose feed record a crash lost). Never fed.
stored_objects = Table(
    "stored_objects",
    metadata,
    Column("key", String, primary_key=True),
    Column("version_id", String, nullable=False),
)

# One row per source region replicating into this store: how far its feed was applied (the checkpoint),
# whether replication from it is paused, and when a batch was last applied.
replication_links = Table(
    "replication_links",
    metadata,
    Column("source", String, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("paused", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("applied_at", Float),
)

# Tables whose changes go to the change feed, by name.
# Region-switch executions: who, when, plan, target, steps, achieved RTO (one JSON document each).
plan_executions = Table(
    "plan_executions",
    metadata,
    Column("execution_id", String, primary_key=True),
    Column("data", Text, nullable=False),
    Column("started_at", Float, nullable=False),
    Index("ix_plan_executions_started_at", "started_at"),
)

FEED_TABLES: dict[str, Table] = {
    t.name: t for t in (jobs, chunks, rejects, reference_tables, reference_parts, notifications, plan_executions)
}

# Feed tables whose rows are merged last-writer-wins on the hlc, so row_versions tracks their writes.
VERSIONED_TABLES = frozenset({"jobs", "chunks", "notifications", "reference_tables", "plan_executions"})

# The change-feed table name of object puts and deletes (fed by the ObjectStore wrapper, not a table here).
OBJECTS_FEED = "objects"


def feed_key(table: Table, row: dict[str, Any]) -> str:
    """The change-feed key of row: its primary-key values joined with '/' (e.g. 'job-1/3')."""
    return "/".join(str(row[c.name]) for c in table.primary_key.columns)
