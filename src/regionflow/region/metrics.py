"""Prometheus metrics of one region process (its workloads add theirs to the same registry).

Every labelled series starts at 0 when the process starts, with the label values named here and the
configured regions: a series that was never touched does not exist for Prometheus, and a standby region
must expose the same series as the active one for dashboards and rate() to work from the start.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from regionflow.replication.replicator import KINDS
from regionflow.switch.records import TERMINAL_EXECUTION_STATUSES
from regionflow.workloads.batch.metrics import BatchMetrics


class CanaryStatus(StrEnum):
    """regionflow_canary_total{status}"""

    SUCCEEDED = "succeeded"
    FAILED = "failed"


# regionflow_plan_executions_total{status}: an execution is counted once it ends, by its status in lower case.
PLAN_EXECUTION_STATUSES = tuple(sorted(s.lower() for s in TERMINAL_EXECUTION_STATUSES))


class RegionMetrics:
    def __init__(self, region: str, regions: Sequence[str]) -> None:
        """Metrics of region, one of the configured regions (the active gauge has one series each)."""
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
        # Series at 0 from the start (the gateway adds one request series per route it serves).
        for name in regions:
            self.active.labels(name)
        # A region replicates from every other region into itself (see replication.directions).
        for source in regions:
            if source != region:
                for kind in KINDS:
                    self.backlog.labels(source, region, kind)
                    self.lag.labels(source, region, kind)
        for status in PLAN_EXECUTION_STATUSES:
            self.plan_executions.labels(status)
        for canary in CanaryStatus:
            self.canary.labels(canary)

    def expect_routes(self, routes: Sequence[tuple[str, str]]) -> None:
        """Create the request-latency series of each (method, route path) at 0."""
        for method, path in routes:
            self.requests.labels(method, path)
