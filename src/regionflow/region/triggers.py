"""The region's trigger loop: the configured plan's triggers that activate this region, evaluated every
TRIGGER_INTERVAL against this region's signals (switch/triggers.py holds the rules).

The plan file is re-read when it changes, so editing the plan needs no restart; a plan that does not load
is reported (GET /plans/triggers) and evaluates nothing until it is fixed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from regionflow.errors import RegionflowError
from regionflow.region.peers import HttpPeers
from regionflow.replication.directions import ReplicationSet
from regionflow.switch.context import SwitchControl
from regionflow.switch.expr import MetricSample
from regionflow.switch.model import Plan
from regionflow.switch.plan import load_plan, plan_regions_known
from regionflow.switch.registry import StepRegistry
from regionflow.switch.triggers import CanaryResult, TriggerEngine

log = logging.getLogger("regionflow.triggers")

TRIGGER_INTERVAL = 1.0


class RegionSignals:
    """switch.triggers.TriggerSignals for one region: peers over their APIs, its own replication and metrics."""

    def __init__(self, name: str, peers: HttpPeers, replication: ReplicationSet, registry: CollectorRegistry, *,
                 refresh: Callable[[], None], own_canary: Callable[[], CanaryResult | None]):
        self.name = name
        self._peers = peers
        self._replication = replication
        self._registry = registry
        self._refresh = refresh
        self._own_canary = own_canary

    def deep_health(self, region: str) -> str:
        return self._peers.deep_health(region)

    def canary(self, region: str) -> CanaryResult | None:
        if region == self.name:
            return self._own_canary()
        seen = (self._peers.health(region) or {}).get("canary")
        if not isinstance(seen, dict) or "ok" not in seen or "at" not in seen:
            return None
        return CanaryResult(ok=bool(seen["ok"]), at=float(seen["at"]))

    def replication_lag(self, source: str | None) -> dict[str, float]:
        return {st.source: max(st.lag_seconds.values(), default=0.0) for st in self._replication.status()
                if source is None or st.source == source}

    def metric_samples(self) -> list[MetricSample]:
        self._refresh()  # some gauges (replication, active region) are set when read, as /metrics does
        return [MetricSample(s.name, s.labels, s.value) for family in self._registry.collect()
                for s in family.samples]


class TriggerLoop:
    """Loads the plan (again when its file changes) and ticks the engine."""

    def __init__(self, engine: TriggerEngine, signals: RegionSignals, control: SwitchControl, *,
                 plan_path: str, steps: StepRegistry, region_names: list[str]):
        self.engine = engine
        self.signals = signals
        self.control = control
        self.plan_path = plan_path
        self.steps = steps
        self.region_names = region_names
        self._loaded: tuple[tuple[int, int] | None, Plan | None, str] = (None, None, "")

    def _plan(self) -> tuple[Plan | None, str]:
        """The plan and, when it cannot be used, why."""
        try:
            st = os.stat(self.plan_path)
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError as exc:
            return None, f"{self.plan_path}: cannot read plan: {exc.strerror}"
        if stamp != self._loaded[0]:
            try:
                plan: Plan | None = load_plan(self.plan_path, self.steps)
                assert plan is not None
                plan_regions_known(plan, self.region_names)
                problem = ""
            except RegionflowError as exc:
                plan, problem = None, str(exc)
                log.warning("triggers: %s", problem)
            self._loaded = (stamp, plan, problem)
        return self._loaded[1], self._loaded[2]

    def tick(self) -> str | None:
        """One evaluation; the id of the execution it started, if any."""
        plan, problem = self._plan()
        try:
            active: str | None = self.control.get().active_region
        except Exception as exc:  # an unreadable control starts nothing (the engine is told None)
            active = None
            problem = problem or f"routing control: {type(exc).__name__}: {exc}"
        return self.engine.tick(plan, self.signals, active, problem)

    def run(self, stop: threading.Event, interval: float = TRIGGER_INTERVAL) -> None:
        while not stop.wait(interval):
            try:
                self.tick()
            except Exception:
                log.exception("trigger evaluation failed")

    def status(self) -> dict[str, Any]:
        """What GET /plans/triggers serves."""
        return {**self.engine.status(), "interval": TRIGGER_INTERVAL}
