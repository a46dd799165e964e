"""Plan triggers: parsing (line-numbered errors), the expression language, and the engine's rules (for:
duration, flapping, one execution at a time, re-arming) on a fake clock with the real SwitchRunner."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from switchfakes import FakeContext, FakeControl, FakeReplication, FakeSource

from regionflow.errors import ConfigError
from regionflow.switch.expr import ExprError, MetricSample, parse_expr
from regionflow.switch.plan import load_plan
from regionflow.switch.records import ExecutionStatus
from regionflow.switch.registry import StepKind, StepRegistry
from regionflow.switch.runner import SwitchRunner
from regionflow.switch.steps import generic_steps
from regionflow.switch.trigger_spec import parse_duration
from regionflow.switch.triggers import CanaryResult, TriggerEngine

EAST, WEST = "us-east-1", "us-west-2"

HEAD = f"name: t\nregions: [{EAST}, {WEST}]\nworkflows:\n  {WEST}:\n    - kind: hold\ntriggers:\n"


class Hold:
    """A step kind that runs until released, so a test decides when an execution ends."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, run, step, deadline) -> dict:
        if not self.release.wait(10):
            raise AssertionError("never released")
        return {}


def _registry(hold: Hold | None = None) -> StepRegistry:
    registry = generic_steps()
    registry.register(StepKind("hold", hold or Hold()))
    return registry


def _plan(tmp_path: Path, triggers: str, registry: StepRegistry | None = None, head: str = HEAD):
    path = tmp_path / "plan.yaml"
    path.write_text(head + triggers)
    return load_plan(path, registry or _registry())


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Signals:
    def __init__(self) -> None:
        self.health = {EAST: "ok", WEST: "ok"}
        self.canaries: dict[str, CanaryResult] = {}
        self.lags: dict[str, float] = {EAST: 0.0}
        self.samples: list[MetricSample] = []
        self.broken = False
        self.reads = 0

    def deep_health(self, region: str) -> str:
        self.reads += 1
        if self.broken:
            raise RuntimeError("network is on fire")
        return self.health[region]

    def canary(self, region: str) -> CanaryResult | None:
        return self.canaries.get(region)

    def replication_lag(self, source: str | None) -> dict[str, float]:
        return {s: v for s, v in self.lags.items() if source in (None, s)}

    def metric_samples(self) -> list[MetricSample]:
        return list(self.samples)


def _engine(active: str = EAST, hold: Hold | None = None):
    ctx = FakeContext(WEST, FakeControl(active, 1), FakeReplication(us_east_1=FakeSource()))
    runner = SwitchRunner(ctx, _registry(hold))
    clock = Clock()
    return TriggerEngine(WEST, runner, clock=clock), runner, clock, ctx


PRIMARY_DOWN = f"""  - name: primary-down
    region_unhealthy: {EAST}
    for: 10s
    activate: {WEST}
"""


def _wait_finished(record) -> None:
    deadline = time.monotonic() + 10
    while not record.finished:
        assert time.monotonic() < deadline, "the execution did not finish"
        time.sleep(0.01)


# ------------------------------------------------------------------------------------------ parsing


def test_every_condition_kind_parses(tmp_path):
    plan = _plan(tmp_path, PRIMARY_DOWN + f"""  - name: canary
    canary_failing: {WEST}
    for: 1m30s
    activate: {WEST}
  - name: lag
    replication_lag_above: 30
    from: {EAST}
    for: 500ms
    activate: {WEST}
  - name: rejects
    description: too many rejected rows
    expr: 'sum(regionflow_rows_total{{outcome="rejected"}}) > 100'
    for: 0
    activate: {WEST}
""")
    by = {t.name: t for t in plan.triggers}
    assert [t.name for t in plan.triggers] == ["primary-down", "canary", "lag", "rejects"]
    assert by["primary-down"].for_seconds == 10 and by["primary-down"].condition.describe() == \
        f"region_unhealthy: {EAST}" and by["primary-down"].line == 7
    assert by["canary"].for_seconds == 90
    assert by["lag"].condition.threshold == 30 and by["lag"].condition.region == EAST and by["lag"].for_seconds == 0.5
    assert by["rejects"].condition.expr is not None and by["rejects"].condition.expr.aggregation == "sum"
    assert by["rejects"].description == "too many rejected rows"


@pytest.mark.parametrize(("duration", "seconds"), [
    (10, 10.0), (2.5, 2.5), ("10s", 10.0), ("2m", 120.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0),
    ("10", None), ("-1s", None), ("s", None), ("10 s", None), (-3, None), (True, None), ("", None),
])
def test_durations(duration, seconds):
    assert parse_duration(duration) == seconds


@pytest.mark.parametrize(("body", "line", "message"), [
    ("  - name: x\n    region_unhealthy: us-east-1\n    for: 10s\n    activate: us-west-2\n    when: now\n", 11,
     "a trigger has no key 'when'"),
    ("  - name: x\n    region_unhealthy: us-east-1\n    activate: us-west-2\n", 7, "trigger 1 needs 'for'"),
    ("  - name: x\n    region_unhealthy: us-east-1\n    canary_failing: us-east-1\n    for: 1\n"
     "    activate: us-west-2\n", 7, "needs exactly one condition"),
    ("  - name: x\n    for: 1\n    activate: us-west-2\n", 7, "needs exactly one condition"),
    ("  - name: x\n    region_unhealthy: eu-west-1\n    for: 1\n    activate: us-west-2\n", 8,
     "region_unhealthy: unknown region 'eu-west-1'"),
    ("  - name: x\n    region_unhealthy: us-west-2\n    for: 1\n    activate: us-east-1\n", 10,
     "the plan has no workflow for us-east-1"),
    ("  - name: x\n    region_unhealthy: us-west-2\n    for: 1\n    activate: us-west-2\n", 8,
     "would activate us-west-2 because us-west-2 itself is unhealthy"),
    ("  - name: x\n    canary_failing: us-east-1\n    from: us-east-1\n    for: 1\n    activate: us-west-2\n", 9,
     "'from' belongs to replication_lag_above"),
    ("  - name: x\n    replication_lag_above: 5\n    from: us-west-2\n    for: 1\n    activate: us-west-2\n", 9,
     "us-west-2 does not replicate from itself"),
    ("  - name: x\n    region_unhealthy: us-east-1\n    for: ten seconds\n    activate: us-west-2\n", 9,
     "for must be a duration"),
    ("  - name: has space\n    region_unhealthy: us-east-1\n    for: 1\n    activate: us-west-2\n", 7,
     "a trigger's name is letters"),
    ("  - name: x\n    expr: 'regionflow_epoch 3'\n    for: 1\n    activate: us-west-2\n", 8,
     "expr: expected a comparison (> >= < <= == !=), found '3' (column 18 of 'regionflow_epoch 3')"),
    (PRIMARY_DOWN + PRIMARY_DOWN, 11, "two triggers are called 'primary-down'"),
    ("  name: x\n", 7, "triggers must be a list"),
])
def test_bad_triggers_are_refused_with_line_and_reason(tmp_path, body, line, message):
    with pytest.raises(ConfigError) as caught:
        _plan(tmp_path, body)
    assert f"plan.yaml:{line}: " in str(caught.value) and message in str(caught.value), str(caught.value)


def test_manual_approval_on_timeout_is_proceed_or_abort(tmp_path):
    head = f"name: t\nregions: [{EAST}, {WEST}]\nworkflows:\n  {WEST}:\n"
    with pytest.raises(ConfigError, match=r"plan.yaml:7: on_timeout must be proceed or abort"):
        _plan(tmp_path, "    - kind: manual_approval\n      timeout: 5\n      on_timeout: shrug\n", head=head)
    plan = _plan(tmp_path, "    - kind: manual_approval\n      on_timeout: proceed\n", head=head)
    assert plan.workflows[WEST][0].params == {"on_timeout": "proceed"}


# ------------------------------------------------------------------------------------------ expressions


def _s(name: str, value: float, **labels: str) -> MetricSample:
    return MetricSample(name, labels, value)


SAMPLES = [
    _s("regionflow_rows_total", 90, outcome="ok"), _s("regionflow_rows_total", 12, outcome="rejected"),
    _s("regionflow_replication_lag_seconds", 4.5, source=EAST, target=WEST, kind="objects"),
    _s("regionflow_replication_lag_seconds", 0.5, source=EAST, target=WEST, kind="state"),
    _s("regionflow_epoch", 3),
]


@pytest.mark.parametrize(("text", "holds", "value"), [
    ("regionflow_epoch > 2", True, 3), ("regionflow_epoch >= 3", True, 3), ("regionflow_epoch < 3", False, 3),
    ("regionflow_epoch == 3", True, 3), ("regionflow_epoch != 3", False, 3), ("regionflow_epoch <= 3.0", True, 3),
    ('regionflow_rows_total{outcome="rejected"} > 10', True, 12),
    ("regionflow_rows_total{outcome='rejected'} > 12", False, 12),
    ('regionflow_rows_total{outcome!="ok"} > 10', True, 12),
    ('regionflow_rows_total{outcome=~"ok|rej.*"} > 50', True, 90),
    ('regionflow_rows_total{outcome!~"o."} < 20', True, 12),
    ('regionflow_rows_total{outcome=~"o"} > 0', False, None),  # regexes match the whole value
    ("sum(regionflow_rows_total) > 100", True, 102), ("count(regionflow_rows_total) == 2", True, 2),
    ('max(regionflow_replication_lag_seconds{source="us-east-1",}) > 4', True, 4.5),
    ("min(regionflow_replication_lag_seconds) > 1", False, 0.5),
    ("regionflow_replication_lag_seconds > 1", True, 4.5),
    ("regionflow_missing > 0", False, None), ("sum(regionflow_missing) < 1", False, None),
    ('regionflow_epoch{region=""} == 3', True, 3),  # an absent label matches ""
    ("  regionflow_epoch>-1e3  ", True, 3),
])
def test_expressions_compare_like_promql(text, holds, value):
    result = parse_expr(text).evaluate(SAMPLES)
    assert (result.holds, result.value) == (holds, value), result


@pytest.mark.parametrize(("text", "column", "message"), [
    ("", 1, "the expression is empty"),
    ("regionflow_epoch", 17, "expected a comparison"),
    ("regionflow_epoch >", 19, "expected a number to compare with"),
    ("regionflow_epoch > 3 and", 22, "unexpected 'and'"),
    ('up{job="x" > 1', 12, "expected , or }"),
    ('up{job="x} > 1', 8, "a label value is not closed"),
    ("up{job=x} > 1", 8, "expected a quoted label value"),
    ("up{job~\"x\"} > 1", 7, "expected a label matcher"),
    ('up{job=~"("} > 1', 9, "bad regular expression for job"),
    ("sum(up > 1", 8, "expected ) to close sum("),
    ("9up > 1", 1, "expected a metric name"),
])
def test_expression_errors_say_where(text, column, message):
    with pytest.raises(ExprError) as caught:
        parse_expr(text)
    assert message in str(caught.value) and caught.value.column == column, (str(caught.value), caught.value.column)


# ------------------------------------------------------------------------------------------ the engine


def test_a_trigger_fires_once_its_condition_has_held_for_its_duration(tmp_path):
    hold = Hold()
    engine, runner, clock, ctx = _engine(hold=hold)
    plan = _plan(tmp_path, PRIMARY_DOWN, _registry(hold))
    signals = Signals()
    assert engine.tick(plan, signals, EAST) is None
    signals.health[EAST] = "unreachable (ConnectError)"
    for _ in range(10):  # true at 1001 ... 1010: held 9 s at most
        clock.t += 1
        assert engine.tick(plan, signals, EAST) is None
    [state] = engine.status()["triggers"]
    assert state["holds"] and state["true_since"] == 1001 and state["note"] == "holding for 9.0s of 10s"
    clock.t += 1
    exec_id = engine.tick(plan, signals, EAST)
    assert exec_id is not None
    record = runner.runs[exec_id].record
    assert record.started_by == "trigger:primary-down" and record.target == WEST
    assert record.trigger == {"name": "primary-down", "description": "", "condition": f"region_unhealthy: {EAST}",
                              "for_seconds": 10.0, "true_since": 1001.0, "held_seconds": 10.0,
                              "observed": "unreachable (ConnectError)",
                              "detail": f"{EAST} deep health: unreachable (ConnectError)", "fired_at": 1011.0,
                              "evaluated_in": WEST}
    assert ctx.saved[exec_id]["trigger"]["name"] == "primary-down"  # persisted with the execution
    [state] = engine.status()["triggers"]
    assert state["last_fired"] == 1011 and state["execution_id"] == exec_id and not state["armed"]
    hold.release.set()
    _wait_finished(record)


def test_a_flapping_region_starts_nothing(tmp_path):
    engine, runner, clock, _ctx = _engine()
    plan = _plan(tmp_path, PRIMARY_DOWN)
    signals = Signals()
    for second in range(60):  # down 3 s, up 1 s, over and over: never 10 s in a row
        clock.t += 1
        signals.health[EAST] = "ok" if second % 4 == 3 else "failing"
        assert engine.tick(plan, signals, EAST) is None
    [state] = engine.status()["triggers"]
    assert state["went_true"] == 15 and state["cleared"] == 15 and runner.runs == {}
    # one evaluation where the signal cannot be read counts as "does not hold" too
    signals.health[EAST] = "failing"
    for _ in range(8):
        clock.t += 1
        engine.tick(plan, signals, EAST)
    signals.broken = True
    clock.t += 1
    engine.tick(plan, signals, EAST)
    [state] = engine.status()["triggers"]
    assert not state["holds"] and "cannot read the signal: RuntimeError" in state["detail"]
    signals.broken = False
    for _ in range(9):
        clock.t += 1
        assert engine.tick(plan, signals, EAST) is None
    assert runner.runs == {}


def test_one_execution_at_a_time_and_no_refire_until_the_condition_clears(tmp_path):
    hold = Hold()
    engine, runner, clock, _ctx = _engine(hold=hold)
    second = f"""  - name: canary
    canary_failing: {WEST}
    for: 5
    activate: {WEST}
"""
    plan = _plan(tmp_path, PRIMARY_DOWN + second, _registry(hold))
    signals = Signals()
    signals.health[EAST] = "failing"
    signals.canaries[WEST] = CanaryResult(ok=False, at=999.0)
    fired = []
    for _ in range(30):
        clock.t += 1
        fired.append(engine.tick(plan, signals, EAST))
    started = [f for f in fired if f]
    assert len(started) == 1  # both triggers were due; one execution
    assert runner.runs[started[0]].record.started_by == "trigger:canary"  # due first (5 s)
    states = {t["name"]: t for t in engine.status()["triggers"]}
    assert states["primary-down"]["note"] == f"due, but execution {started[0]} is running"
    hold.release.set()
    _wait_finished(runner.runs[started[0]].record)
    # it finished (here: succeeded, but the region stays standby as the fake control was not moved by
    # `hold`); the other trigger, armed and due, now starts the next one
    clock.t += 1
    nxt = engine.tick(plan, signals, EAST)
    assert nxt is not None and runner.runs[nxt].record.started_by == "trigger:primary-down"
    _wait_finished(runner.runs[nxt].record)
    for _ in range(20):  # both fired and the conditions still hold: nothing more
        clock.t += 1
        assert engine.tick(plan, signals, EAST) is None
    states = {t["name"]: t for t in engine.status()["triggers"]}
    assert "fires again only after the condition has cleared" in states["primary-down"]["note"]
    signals.health[EAST] = "ok"  # it clears, then goes down again for 10 s: armed again
    clock.t += 1
    engine.tick(plan, signals, EAST)
    signals.health[EAST] = "failing"
    signals.canaries[WEST] = CanaryResult(ok=True, at=clock.t)
    again = []
    for _ in range(11):
        clock.t += 1
        again.append(engine.tick(plan, signals, EAST))
    assert [a is not None for a in again] == [False] * 10 + [True] and len(runner.runs) == 3
    hold.release.set()


def test_a_switch_already_running_here_means_not_now(tmp_path):
    hold = Hold()
    engine, runner, clock, _ctx = _engine(hold=hold)
    plan = _plan(tmp_path, PRIMARY_DOWN.replace("10s", "2"), _registry(hold))
    manual = runner.start(plan, WEST, practice=False, started_by="alice@cli")
    signals = Signals()
    signals.health[EAST] = "failing"
    for _ in range(4):
        clock.t += 1
        assert engine.tick(plan, signals, EAST) is None
    [state] = engine.status()["triggers"]
    assert state["note"] == "due, but not started: another region switch is running in this region"
    assert state["armed"]
    hold.release.set()
    _wait_finished(manual)


def test_nothing_is_evaluated_in_the_active_region_and_nothing_starts_without_the_control(tmp_path):
    engine, runner, clock, _ctx = _engine(active=WEST)
    plan = _plan(tmp_path, PRIMARY_DOWN)
    signals = Signals()
    signals.health[EAST] = "failing"
    for _ in range(15):
        clock.t += 1
        assert engine.tick(plan, signals, WEST) is None
    [state] = engine.status()["triggers"]
    assert state["note"] == f"{WEST} is the active region" and signals.reads == 0
    for _ in range(15):
        clock.t += 1
        assert engine.tick(plan, signals, None, "routing control: ControlUnavailable") is None
    [state] = engine.status()["triggers"]
    assert state["holds"] and "the routing control cannot be read" in state["note"]
    assert engine.status()["problem"] == "routing control: ControlUnavailable" and runner.runs == {}


def test_only_triggers_that_activate_this_region_are_evaluated_and_unchanged_ones_keep_their_state(tmp_path):
    engine, _runner, clock, _ctx = _engine()
    head = (f"name: t\nregions: [{EAST}, {WEST}]\nworkflows:\n  {WEST}:\n    - kind: hold\n"
            f"  {EAST}:\n    - kind: hold\ntriggers:\n")
    east = f"  - name: west-down\n    region_unhealthy: {WEST}\n    for: 10s\n    activate: {EAST}\n"
    plan = _plan(tmp_path, PRIMARY_DOWN + east, head=head)
    signals = Signals()
    signals.health[EAST] = "failing"
    clock.t += 1
    engine.tick(plan, signals, EAST)
    assert [t["name"] for t in engine.status()["triggers"]] == ["primary-down"]
    reloaded = _plan(tmp_path, PRIMARY_DOWN + east, head=head)
    clock.t += 1
    engine.tick(reloaded, signals, EAST)
    assert engine.status()["triggers"][0]["true_since"] == 1001  # the streak survived the reload
    changed = _plan(tmp_path, PRIMARY_DOWN.replace("10s", "20s"), head=head)
    clock.t += 1
    engine.tick(changed, signals, EAST)
    assert engine.status()["triggers"][0]["true_since"] == 1003  # a changed trigger starts afresh


# ------------------------------------------------------------------------------------------ approval


def _approval_plan(tmp_path: Path, on_timeout: str):
    head = f"name: t\nregions: [{EAST}, {WEST}]\nworkflows:\n  {WEST}:\n"
    return _plan(tmp_path, f"    - kind: manual_approval\n      timeout: 0.3\n      on_timeout: {on_timeout}\n"
                           "    - kind: routing_control\n", head=head)


def test_an_approval_that_times_out_with_abort_ends_the_execution_and_changes_nothing(tmp_path):
    _engine_, runner, _clock, ctx = _engine()
    record = runner.start(_approval_plan(tmp_path, "abort"), WEST, practice=False, started_by="trigger:x")
    _wait_finished(record)
    assert record.status == ExecutionStatus.ABORTED and len(record.steps) == 1
    assert "not approved within 0.3s (on_timeout: abort)" in (record.error or "")
    assert ctx.control.sets == [] and ctx.saved[record.execution_id]["status"] == "ABORTED"
    assert ctx.counted == ["aborted"] and not runner.approve(record.execution_id, "late")


def test_an_approval_that_times_out_with_proceed_goes_on_and_says_so(tmp_path):
    _engine_, runner, _clock, ctx = _engine()
    record = runner.start(_approval_plan(tmp_path, "proceed"), WEST, practice=False, started_by="trigger:x")
    _wait_finished(record)
    assert record.status == ExecutionStatus.SUCCEEDED
    out = record.steps[0].output
    assert out["proceeded_without_approval"] is True and out["approved_by"] is None and out["waited_seconds"] >= 0.3
    assert ctx.control.sets == [(WEST, 1)] and ctx.control.state.active_region == WEST


def test_approval_is_accepted_only_while_a_step_waits(tmp_path):
    hold = Hold()
    _engine_, runner, _clock, ctx = _engine(hold=hold)
    head = f"name: t\nregions: [{EAST}, {WEST}]\nworkflows:\n  {WEST}:\n"
    plan = _plan(tmp_path, "    - kind: hold\n    - kind: manual_approval\n      timeout: 5\n", _registry(hold),
                 head=head)
    record = runner.start(plan, WEST, practice=False, started_by="test")
    assert not runner.approve(record.execution_id, "too-early")  # still at `hold`
    hold.release.set()
    deadline = time.monotonic() + 5
    while record.status != ExecutionStatus.WAITING_APPROVAL:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert record.waiting_for is not None and record.waiting_for["on_timeout"] == "abort"
    assert record.waiting_for["until"] > time.time()
    assert runner.approve(record.execution_id, "alice")
    _wait_finished(record)
    assert record.status == ExecutionStatus.SUCCEEDED and record.steps[1].output["approved_by"] == "alice"
    assert record.waiting_for is None and ctx.saved[record.execution_id]["waiting_for"] is None
