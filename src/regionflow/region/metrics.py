"""Prometheus metrics of one region process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class RegionMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
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
        self.backlog = Gauge("regionflow_replication_backlog", "Changes not yet applied",
                             ["source", "target", "kind"], registry=r)
        self.lag = Gauge("regionflow_replication_lag_seconds", "Age of the oldest unapplied change",
                         ["source", "target", "kind"], registry=r)
        self.active = Gauge("regionflow_active", "1 when this region is the active one", ["region"], registry=r)
        self.epoch = Gauge("regionflow_epoch", "Current epoch of the routing control", registry=r)
        self.plan_executions = Counter("regionflow_plan_executions_total", "Region-switch plan executions",
                                       ["status"], registry=r)
        self.canary = Counter("regionflow_canary_total", "Canary runs", ["status"], registry=r)
        self.canary_latency = Gauge("regionflow_canary_latency_seconds",
                                    "End-to-end latency of the last successful canary", registry=r)
        self.requests = Histogram("regionflow_request_seconds", "Gateway request latency", ["method", "route"],
                                  registry=r)
