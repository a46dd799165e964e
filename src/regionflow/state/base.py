"""The StateStore port: jobs, chunks, rejects, reference data, notifications and the change feed.

Every mutating call is one transaction that also appends to the change feed (DESIGN §4), so a
replicator can ship the store's history to another region. Writes that belong to a job's lifecycle
name the epoch the job was claimed under and raise FencedOut when that is no longer true (DESIGN §3).
Changes from another region's feed are applied with apply_changes (last-writer-wins on a hybrid logical
clock, fenced by epoch) and are not fed again; the target keeps each source's checkpoint and pause flag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class JobStatus(StrEnum):
    INITIALIZED = "INITIALIZED"
    SPLIT = "SPLIT"
    PROCESSING = "PROCESSING"
    MERGED = "MERGED"
    NOTIFIED = "NOTIFIED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})


class ChunkStatus(StrEnum):
    PENDING = "PENDING"
    DONE = "DONE"


@dataclass
class JobRecord:
    job_id: str
    input_key: str
    version_id: str
    input_etag: str
    pipeline: str
    status: str = JobStatus.INITIALIZED
    owner_region: str = ""
    owner_epoch: int = 0
    completing_region: str | None = None
    rows_in: int | None = None
    rows_ok: int | None = None
    rows_rejected: int | None = None
    chunks_total: int | None = None
    output_key: str | None = None
    output_etag: str | None = None
    reason: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass
class ChunkRecord:
    job_id: str
    idx: int
    object_key: str
    first_row: int  # 1-based data row number of the chunk's first row
    rows: int
    status: str = ChunkStatus.PENDING
    attempts: int = 0
    out_key: str | None = None
    out_etag: str | None = None
    rows_ok: int | None = None
    rows_rejected: int | None = None
    byte_offset: int | None = None  # the chunk's range of the input (object_key names the input)
    byte_length: int | None = None


@dataclass
class RejectRecord:
    job_id: str
    row_no: int  # 1-based data row number in the input file
    chunk_idx: int
    raw: str
    reason: str


@dataclass
class ReferenceInfo:
    table: str
    key_column: str
    columns: list[str]
    rows: int
    parts: int
    revision: int
    loaded_at: float


@dataclass
class NotificationRecord:
    job_id: str  # the dedupe key: one notification per job
    recipients: list[str]
    subject: str
    link: str
    rows_ok: int
    rows_rejected: int
    region: str
    channel: str  # "outbox" or "smtp"
    status: str = "sending"  # "sending" until delivered, then "sent"
    created_at: float = 0.0
    sent_at: float | None = None


@dataclass
class Change:
    seq: int
    table: str
    key: str
    row: dict[str, Any] | None  # None for a delete
    hlc: int
    epoch: int
    origin: str
    created_at: float = field(default=0.0)


@runtime_checkable
class StateStore(Protocol):
    """Persistent batch state for one region."""

    region: str

    # jobs
    def create_job(self, job: JobRecord) -> bool:
        """Insert the job unless a job with that id exists; True when inserted. Never overwrites."""
        ...

    def get_job(self, job_id: str) -> JobRecord | None:
        """The job, or None."""
        ...

    def list_jobs(self, status: str | None = None, limit: int | None = None,
                  input_key: str | None = None, input_prefix: str | None = None) -> list[JobRecord]:
        """Jobs, newest first, optionally only those in one status, of one input key and/or of input keys
        that start with input_prefix."""
        ...

    def list_jobs_unfinished(self) -> list[JobRecord]:
        """Jobs not yet COMPLETED or FAILED, oldest first (what a reconcile resumes)."""
        ...

    def transition_job(
        self, job_id: str, *, epoch: int, from_status: str | tuple[str, ...], to_status: str, **fields: Any
    ) -> JobRecord:
        """Move the job from one of from_status to to_status and set fields, only if it is still owned
        under epoch and in from_status; otherwise raise FencedOut. Returns the updated job."""
        ...

    def claim_job(self, job_id: str, *, region: str, epoch: int) -> JobRecord:
        """Take ownership of the job under epoch (only moving to a higher or equal epoch); raise FencedOut
        when the job is owned under a higher epoch. Returns the updated job."""
        ...

    # chunks
    def add_chunks(self, job_id: str, chunks: list[ChunkRecord], *, epoch: int) -> None:
        """Record the job's chunk list (chunks already present are kept as they are). Fenced by epoch."""
        ...

    def record_split(self, job_id: str, chunks: list[ChunkRecord], *, epoch: int, rows_in: int) -> JobRecord:
        """add_chunks and the job's move from INITIALIZED to SPLIT (rows_in, chunks_total = len(chunks)), in one
        transaction fenced by epoch (FencedOut changes nothing). Returns the updated job."""
        ...

    def list_chunks(self, job_id: str) -> list[ChunkRecord]:
        """The job's chunks in index order."""
        ...

    def start_chunk(self, job_id: str, idx: int, *, epoch: int) -> int:
        """Count one more attempt at the chunk and return the attempt number. Fenced by epoch."""
        ...

    def start_chunks(self, job_id: str, idxs: list[int], *, epoch: int) -> dict[int, int]:
        """start_chunk for many chunks in one transaction; returns each chunk's attempt number."""
        ...

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
        """Store the chunk's rejects (replacing any from an earlier attempt) and mark it DONE with its
        output etag and counts, atomically. Fenced by epoch."""
        ...

    # rejects
    def list_rejects(self, job_id: str, limit: int | None = None, offset: int = 0) -> list[RejectRecord]:
        """The job's rejects in row order."""
        ...

    def count_rejects(self, job_id: str) -> int:
        """How many rejects the job has."""
        ...

    # reference data
    def load_reference(self, table: str, key_column: str, columns: list[str], parts: list[str],
                       rows: int) -> ReferenceInfo:
        """Replace the reference table's content with parts (CSV text with the header, each a slice of the
        table) and bump its revision."""
        ...

    def reference_info(self, table: str) -> ReferenceInfo | None:
        """The table's metadata, or None when it was never loaded."""
        ...

    def reference_parts(self, table: str) -> list[str]:
        """The table's CSV parts in order."""
        ...

    # notifications
    def record_notification(self, rec: NotificationRecord) -> bool:
        """Insert the notification unless one exists for the job; True when inserted."""
        ...

    def mark_notification_sent(self, job_id: str) -> None:
        """Record that the notification was delivered."""
        ...

    def mark_notified(self, job_id: str, *, epoch: int) -> JobRecord:
        """mark_notification_sent and the job's move from MERGED to NOTIFIED, in one transaction fenced by
        epoch (FencedOut changes neither). Returns the updated job."""
        ...

    def get_notification(self, job_id: str) -> NotificationRecord | None:
        """The job's notification, or None."""
        ...

    def list_notifications(self) -> list[NotificationRecord]:
        """Every notification, oldest first."""
        ...

    # change feed
    def feed_since(self, seq: int, limit: int = 1000, kind: str | None = None) -> list[Change]:
        """Changes with a sequence number greater than seq, in order; kind "objects" or "state" keeps only
        object changes or only row changes (each kind is replicated with its own cursor)."""
        ...

    def feed_page_json(self, seq: int, limit: int = 1000, kind: str | None = None) -> str:
        """feed_since(seq, limit, kind) as JSON text: a list of objects with Change's fields, "row" being the
        row image (null for a delete). What the feed endpoint sends, built without decoding the images."""
        ...

    def feed_head(self) -> int:
        """The highest sequence number in the feed (0 when empty)."""
        ...

    def feed_stats(self, since: int) -> dict[str, Any]:
        """What the feed holds after seq since, for backlog and lag: ``{"head": feed_head, "objects":
        {"count": n, "oldest": created_at or None}, "state": {...}}``, where "objects" counts object
        puts and deletes and "state" every other change; "oldest" is the earliest created_at among them."""
        ...

    def record_object_change(self, key: str, info: dict[str, Any] | None, epoch: int = 0) -> None:
        """Append an object put (info: the object's key, etag, version_id, size, content_type, metadata and
        last_modified) or delete (info None) to the feed under table name "objects"."""
        ...

    def note_stored_object(self, key: str, version_id: str | None) -> None:
        """Record that this region's object store holds key at version_id (None: no longer holds it),
        without feeding anything: what the replicator says of the copies it applies. (record_object_change
        records its puts and deletes the same way.)"""
        ...

    def stored_versions(self, keys: list[str]) -> dict[str, str]:
        """{key: version id} of those keys this region knows its object store holds (see
        note_stored_object); keys it knows nothing of are left out."""
        ...

    # replication (DESIGN §3, §4): applying another region's changes, and per-source checkpoints
    def apply_change(self, change: Change) -> bool:
        """Apply one change read from ANOTHER region's feed; True when applied, False when discarded as stale.

        The change is not appended to this store's feed (replication is pairwise: applied changes are not
        shipped on), but its hlc is merged into this store's clock, so later local writes order after it.
        Rules: last-writer-wins on the hlc per row (jobs, chunks, notifications, reference tables), except
        that a change written under a lower epoch never overrides a job owned under a higher one: a job
        image with a lower owner_epoch than the local job's loses, one with a higher owner_epoch wins
        whatever its hlc, and chunk and reject changes under an epoch lower than the local job's owner
        epoch lose. A notification already "sent" never goes back to "sending". Rejects and reference
        parts are upserted (or deleted) as they come. Re-applying a change is harmless.
        Raises ValueError for an "objects" change (the replicator copies objects) or an unknown table.
        """
        ...

    def apply_changes(self, changes: list[Change]) -> int:
        """apply_change for each change, in order, in one transaction; returns how many were applied.
        Validates every change first: a ValueError applies nothing."""
        ...

    def get_checkpoint(self, source: str) -> int:
        """The sequence number of source's feed up to which it was applied here (0 when never)."""
        ...

    def set_checkpoint(self, source: str, seq: int) -> None:
        """Advance source's checkpoint to seq (never moves it back) and record now as the last apply."""
        ...

    def apply_changes_and_checkpoint(self, source: str, changes: list[Change], seq: int) -> int:
        """apply_changes and set_checkpoint in one transaction, so the checkpoint is never ahead of a
        durable apply; returns how many changes were applied."""
        ...

    def set_paused(self, source: str, paused: bool) -> None:
        """Pause or resume replication from source (the replicator honours it; the checkpoint is kept)."""
        ...

    def is_paused(self, source: str) -> bool:
        """Whether replication from source is paused (False when never set)."""
        ...

    def replication_link(self, source: str) -> dict[str, Any]:
        """Replication from source as seen here: {"source", "seq" (the checkpoint), "paused",
        "applied_at" (time of the last apply or None), "updated_at" (None when never recorded)}."""
        ...

    # plan executions
    def save_execution(self, record: dict[str, Any]) -> None:
        """Insert or replace a region-switch execution record (a JSON document keyed by execution_id)."""
        ...

    def get_execution(self, execution_id: str) -> dict[str, Any] | None:
        """The execution record, or None."""
        ...

    def list_executions(self, limit: int = 100) -> list[dict[str, Any]]:
        """Execution records, newest first."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
