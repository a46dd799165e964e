"""Plan triggers: read regionflow's own signals, hold each condition for its `for:` duration, start the plan.

A trigger is evaluated by the region it would activate (so it works while the other region is dead),
only while that region is not the active one. The engine is pure apart from the signals it reads (a
Protocol the region implements) and an injected clock; the region calls tick() in a loop.

Rules that keep it from flapping or piling up executions:
- the condition must hold at every evaluation for `for_seconds`; one evaluation where it does not hold
  (or cannot be read) starts the count again;
- at most one execution at a time: nothing fires while an execution a trigger started is still running,
  and SwitchBusy (any other switch running here) means "not now";
- a trigger that fired is disarmed until its condition has been seen not holding, so an execution that
  failed or was aborted is not started again and again for the same outage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from regionflow.switch.expr import MetricSample
from regionflow.switch.model import Condition, Plan, Trigger
from regionflow.switch.runner import SwitchBusy, SwitchRunner

log = logging.getLogger("regionflow.triggers")


@dataclass(frozen=True)
class CanaryResult:
    """A region's latest canary: whether it completed, and when it ended (epoch seconds)."""

    ok: bool
    at: float


class TriggerSignals(Protocol):
    """What triggers read, as the evaluating region sees it."""

    def deep_health(self, region: str) -> str:
        """"ok", "failing", or why region could not be asked (e.g. "unreachable (ConnectError)")."""
        ...

    def canary(self, region: str) -> CanaryResult | None:
        """region's latest canary; None when it runs none, has none yet, or cannot be asked."""
        ...

    def replication_lag(self, source: str | None) -> dict[str, float]:
        """Lag in seconds (the larger of objects and state) of replication into this region, per source,
        as of the last replication pass; source None: every source."""
        ...

    def metric_samples(self) -> list[MetricSample]:
        """This region's own metric samples, as its /metrics would show them now."""
        ...


@dataclass(frozen=True)
class Observation:
    holds: bool
    value: float | str | None
    detail: str


def observe(condition: Condition, signals: TriggerSignals) -> Observation:
    """Read the signal a condition is about and say whether it holds."""
    if condition.kind == "region_unhealthy":
        assert condition.region is not None
        status = signals.deep_health(condition.region)
        return Observation(status != "ok", status, f"{condition.region} deep health: {status}")
    if condition.kind == "canary_failing":
        assert condition.region is not None
        canary = signals.canary(condition.region)
        if canary is None:
            return Observation(False, None, f"no canary result from {condition.region} (canary off, none yet, "
                                            "or the region cannot be asked)")
        at = time.strftime("%H:%M:%S", time.localtime(canary.at))
        return Observation(not canary.ok, "failed" if not canary.ok else "ok",
                           f"{condition.region}'s last canary ({at}) {'completed' if canary.ok else 'failed'}")
    if condition.kind == "replication_lag_above":
        assert condition.threshold is not None
        lags = signals.replication_lag(condition.region)
        if not lags:
            return Observation(False, None, "no replication direction into this region")
        source, lag = max(lags.items(), key=lambda kv: kv[1])
        return Observation(lag > condition.threshold, round(lag, 3),
                           f"lag from {source} {lag:.1f}s (bound {condition.threshold:g}s)")
    if condition.kind == "expr":
        assert condition.expr is not None
        result = condition.expr.evaluate(signals.metric_samples())
        return Observation(result.holds, result.value, result.detail)
    raise ValueError(f"unknown condition kind {condition.kind!r}")


class _Memo:
    """The signals, each read at most once per tick (two triggers watching one region cost one request)."""

    def __init__(self, signals: TriggerSignals):
        self._signals = signals
        self._seen: dict[tuple[str, Any], Any] = {}

    def _get(self, name: str, arg: Any, read: Callable[[], Any]) -> Any:
        if (name, arg) not in self._seen:
            self._seen[(name, arg)] = read()
        return self._seen[(name, arg)]

    def deep_health(self, region: str) -> str:
        return self._get("deep_health", region, lambda: self._signals.deep_health(region))

    def canary(self, region: str) -> CanaryResult | None:
        return self._get("canary", region, lambda: self._signals.canary(region))

    def replication_lag(self, source: str | None) -> dict[str, float]:
        return self._get("lag", source, lambda: self._signals.replication_lag(source))

    def metric_samples(self) -> list[MetricSample]:
        return self._get("metrics", None, self._signals.metric_samples)


@dataclass
class TriggerState:
    """One trigger as last evaluated (times are the engine clock's, epoch seconds by default)."""

    trigger: Trigger
    holds: bool = False
    true_since: float | None = None  # start of the current streak of evaluations where the condition held
    last_evaluated: float | None = None
    observed: float | str | None = None
    detail: str = ""
    went_true: int = 0  # times the condition went from not holding to holding
    cleared: int = 0  # times it went from holding to not holding
    first_true_at: float | None = None
    last_cleared_at: float | None = None
    armed: bool = True
    last_fired: float | None = None
    execution_id: str | None = None
    note: str = ""

    def key(self) -> tuple[Any, ...]:
        t = self.trigger
        return (t.name, t.activate, t.condition.describe(), t.for_seconds)

    def reset(self, note: str) -> None:
        """Not evaluated (this region is active, or nothing can be read): the streak starts again."""
        self.holds, self.true_since, self.armed, self.note = False, None, True, note

    def record(self, seen: Observation, now: float) -> None:
        if seen.holds and not self.holds:
            self.went_true += 1
            self.true_since = now
            if self.first_true_at is None:
                self.first_true_at = now
        elif not seen.holds and self.holds:
            self.cleared += 1
            self.last_cleared_at = now
        if not seen.holds:
            self.true_since = None
            self.armed = True  # the condition cleared: the next outage may fire again
        self.holds, self.observed, self.detail, self.last_evaluated = seen.holds, seen.value, seen.detail, now

    def to_dict(self, now: float) -> dict[str, Any]:
        t = self.trigger
        held = round(now - self.true_since, 3) if self.true_since is not None else None
        return {"name": t.name, "description": t.description, "activate": t.activate,
                "condition": t.condition.describe(), "for_seconds": t.for_seconds, "line": t.line,
                "holds": self.holds, "true_since": self.true_since, "held_seconds": held,
                "observed": self.observed, "detail": self.detail, "last_evaluated": self.last_evaluated,
                "went_true": self.went_true, "cleared": self.cleared, "first_true_at": self.first_true_at,
                "last_cleared_at": self.last_cleared_at, "armed": self.armed, "last_fired": self.last_fired,
                "execution_id": self.execution_id, "note": self.note}


@dataclass
class _Snapshot:
    plan: str | None = None
    problem: str = ""
    ticks: int = 0
    last_tick: float | None = None
    states: list[TriggerState] = field(default_factory=list)


class TriggerEngine:
    """The triggers of one region: tick() evaluates them and starts at most one execution."""

    def __init__(self, region: str, runner: SwitchRunner, *, clock: Callable[[], float] = time.time):
        self.region = region
        self.runner = runner
        self.clock = clock
        self._lock = threading.Lock()
        self._now = _Snapshot()

    def _sync(self, plan: Plan | None) -> list[TriggerState]:
        """The states of plan's triggers that activate this region; unchanged triggers keep theirs."""
        old = {s.key(): s for s in self._now.states}
        states = []
        for trigger in plan.triggers if plan else []:
            if trigger.activate != self.region:
                continue
            fresh = TriggerState(trigger)
            states.append(old.get(fresh.key(), fresh))
        return states

    def _running(self, states: list[TriggerState]) -> str | None:
        """The id of an execution a trigger started that has not finished yet."""
        for s in states:
            run = self.runner.runs.get(s.execution_id or "")
            if run is not None and not run.record.finished:
                return s.execution_id
        return None

    def tick(self, plan: Plan | None, signals: TriggerSignals, active_region: str | None,
             problem: str = "") -> str | None:
        """Evaluate once; returns the id of the execution started, if one was.

        plan None (with problem saying why) evaluates nothing. active_region None means the routing
        control could not be read: conditions are evaluated but nothing starts."""
        now = self.clock()
        with self._lock:
            states = self._sync(plan)
            self._now = _Snapshot(plan=plan.path if plan else None, problem=problem, ticks=self._now.ticks + 1,
                                  last_tick=now, states=states)
        if plan is None:
            return None
        if active_region == self.region:
            with self._lock:
                for s in states:
                    s.reset(f"{self.region} is the active region")
            return None
        memo = _Memo(signals)
        for s in states:
            try:
                seen = observe(s.trigger.condition, memo)
            except Exception as exc:  # a signal that cannot be read does not hold; the streak restarts
                log.warning("trigger %s: %s", s.trigger.name, exc)
                seen = Observation(False, None, f"cannot read the signal: {type(exc).__name__}: {exc}")
            with self._lock:
                s.record(seen, now)
        with self._lock:
            return self._fire(plan, states, active_region, now)

    def _fire(self, plan: Plan, states: list[TriggerState], active_region: str | None, now: float) -> str | None:
        """Start the first trigger that is due, if nothing a trigger started is running (under the lock)."""
        running = self._running(states)
        started: str | None = None
        for s in states:
            held = now - s.true_since if s.true_since is not None else 0.0
            if not s.holds:
                s.note = "condition does not hold"
            elif not s.armed:
                s.note = f"fired {s.execution_id}; fires again only after the condition has cleared"
            elif held < s.trigger.for_seconds:
                s.note = f"holding for {held:.1f}s of {s.trigger.for_seconds:g}s"
            elif running is not None or started is not None:
                s.note = f"due, but execution {running or started} is running"
            elif active_region is None:
                s.note = "due, but the routing control cannot be read: not starting anything"
            else:
                started = self._start(plan, s, now, held)
        return started

    def _start(self, plan: Plan, s: TriggerState, now: float, held: float) -> str | None:
        t = s.trigger
        reason = {"name": t.name, "description": t.description, "condition": t.condition.describe(),
                  "for_seconds": t.for_seconds, "true_since": s.true_since, "held_seconds": round(held, 3),
                  "observed": s.observed, "detail": s.detail, "fired_at": now, "evaluated_in": self.region}
        try:
            record = self.runner.start(plan, self.region, practice=False, started_by=f"trigger:{t.name}",
                                       trigger=reason)
        except SwitchBusy as exc:
            s.note = f"due, but not started: {exc}"
            return None
        except Exception as exc:
            log.exception("trigger %s could not start plan %s", t.name, plan.name)
            s.note = f"due, but could not start: {type(exc).__name__}: {exc}"
            return None
        log.warning("trigger %s fired (%s for %.1fs): execution %s", t.name, t.condition.describe(), held,
                    record.execution_id)
        s.armed, s.last_fired, s.execution_id = False, now, record.execution_id
        s.note = f"fired {record.execution_id}"
        return record.execution_id

    def status(self) -> dict[str, Any]:
        """The triggers' states, for the API: plan, problem, last tick, one entry per trigger."""
        with self._lock:
            now = self.clock()
            snap = self._now
            return {"region": self.region, "plan": snap.plan, "problem": snap.problem, "ticks": snap.ticks,
                    "last_tick": snap.last_tick, "now": now, "triggers": [s.to_dict(now) for s in snap.states]}
