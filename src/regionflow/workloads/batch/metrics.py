"""Prometheus metrics of the batch workload, registered into the region's registry.

Every label value a counter is used with is named here, once, and every series starts at 0 when the
registry is built: a labelled series Prometheus has never seen does not exist, so a standby region (which
runs no job) would otherwise expose none of them and dashboards and rate() would have nothing to read.
"""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter

from regionflow.workloads.batch.events import Lifecycle

CHUNK_EVENT_PREFIX = "chunk_"


class JobRun(StrEnum):
    """regionflow_orchestrator_executions_total{status}: one run of the job runner over a job."""

    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class RowOutcome(StrEnum):
    """regionflow_rows_total{outcome}"""

    OK = "ok"
    REJECTED = "rejected"


class NotifyOutcome(StrEnum):
    """regionflow_notifications_total{status}: delivered now, or the sink already had the job's message."""

    SENT = "sent"
    DUPLICATE = "duplicate"


# regionflow_chunk_executions_total{status}: the orchestrator's chunk lifecycle events without the prefix,
# derived from the events themselves so a new chunk event gets its series too.
CHUNK_STATUSES = tuple(e.removeprefix(CHUNK_EVENT_PREFIX) for e in Lifecycle if e.startswith(CHUNK_EVENT_PREFIX))


class BatchMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.files_split = Counter("regionflow_files_split_total", "Input files split into chunks", registry=r)
        self.files_processed = Counter("regionflow_files_processed_total", "Jobs completed", registry=r)
        self.files_skipped = Counter("regionflow_files_skipped_total",
                                     "Input objects seen while not the active region", registry=r)
        self.files_reconciled = Counter("regionflow_files_reconciled_total", "Jobs resumed by reconcile",
                                        registry=r)
        self.orchestrator = Counter("regionflow_orchestrator_executions_total", "Job runs", ["status"], registry=r)
        self.chunks = Counter("regionflow_chunk_executions_total", "Chunk runs", ["status"], registry=r)
        self.rows = Counter("regionflow_rows_total", "Rows by outcome", ["outcome"], registry=r)
        self.notifications = Counter("regionflow_notifications_total", "Notifications", ["status"], registry=r)
        for counter, values in ((self.orchestrator, tuple(JobRun)), (self.chunks, CHUNK_STATUSES),
                                (self.rows, tuple(RowOutcome)), (self.notifications, tuple(NotifyOutcome))):
            for value in values:
                counter.labels(value)  # creates the series at 0

    def chunk_event(self, event: str) -> None:
        """Count a chunk lifecycle event ("chunk_started", ...) under its status."""
        self.chunks.labels(event.removeprefix(CHUNK_EVENT_PREFIX)).inc()
