"""Prometheus metrics of one region process (its workloads add theirs to the same registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from regionflow.workloads.batch.metrics import BatchMetrics


class RegionMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.batch = BatchMetrics(r)
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
