"""Prometheus metrics of the batch workload, registered into the region's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


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
