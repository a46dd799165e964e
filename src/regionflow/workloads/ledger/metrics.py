"""The ledger's Prometheus metrics, in the region's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OUTCOMES = ("created", "repeated", "unavailable")


class LedgerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.transfers = Counter("regionflow_ledger_transfers_total", "Transfer requests by outcome", ["outcome"],
                                 registry=registry)
        self.commit_seconds = Histogram(
            "regionflow_ledger_commit_seconds", "Time from a transfer's start to its commit returning",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5), registry=registry)
        self.replay_lag = Gauge("regionflow_ledger_replay_lag_seconds",
                                "This region's ledger node: seconds its replay trails (0 on the primary)",
                                registry=registry)
        self.canary = Counter("regionflow_ledger_canary_total", "Ledger canary transfers", ["status"],
                              registry=registry)
        self.canary_latency = Gauge("regionflow_ledger_canary_latency_seconds",
                                    "Latency of the last successful ledger canary transfer", registry=registry)
        for outcome in OUTCOMES:
            self.transfers.labels(outcome)
        for status in ("succeeded", "failed"):
            self.canary.labels(status)

    def observe(self, outcome: str, seconds: float) -> None:
        self.transfers.labels(outcome).inc()
        if outcome == "created":
            self.commit_seconds.observe(seconds)
