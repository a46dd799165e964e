"""The switch's steps and runner against in-memory fakes of the region (no processes, no network)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from switchfakes import FakeContext, FakeControl, FakePeers, FakeReplication, FakeSource

from regionflow.errors import ConfigError
from regionflow.switch.context import PeerActivity, StepFailed
from regionflow.switch.model import Step
from regionflow.switch.plan import load_plan
from regionflow.switch.records import ExecutionStatus, StepStatus
from regionflow.switch.registry import StepKind, StepRegistry
from regionflow.switch.runner import PlanRun, SwitchBusy, SwitchRunner
from regionflow.switch.steps import generic_steps, health_check, routing_control, wait_replication

EAST, WEST = "us-east-1", "us-west-2"


def _plan(tmp_path: Path, steps_yaml: str, registry: StepRegistry | None = None):
    path = tmp_path / "plan.yaml"
    path.write_text(f"name: t\nregions: [{EAST}, {WEST}]\ndesired_rto_seconds: 30\nworkflows:\n  {WEST}:\n"
                    + steps_yaml)
    return load_plan(path, registry or generic_steps())


def _run(ctx: FakeContext, plan, *, practice: bool = False, registry: StepRegistry | None = None) -> PlanRun:
    return PlanRun(ctx, registry or generic_steps(), plan, WEST, practice=practice, started_by="test")


def _ctx(source: FakeSource, active: str = EAST, epoch: int = 3, **kw) -> FakeContext:
    return FakeContext(WEST, FakeControl(active, epoch), FakeReplication(us_east_1=source), **kw)


def test_routing_control_moves_the_epoch_once_and_practice_changes_nothing(tmp_path):
    plan = _plan(tmp_path, "    - kind: routing_control\n")
    ctx = _ctx(FakeSource())
    out = routing_control(_run(ctx, plan, practice=True), Step("routing_control", "rc", 1), time.monotonic() + 5)
    assert out["would_set"] == WEST and ctx.control.sets == []
    run = _run(ctx, plan)
    assert routing_control(run, Step("routing_control", "rc", 1), time.monotonic() + 5)["epoch"] == 4
    assert run.epoch == 4 and ctx.control.state.active_region == WEST
    again = routing_control(run, Step("routing_control", "rc", 1), time.monotonic() + 5)
    assert again == {"active": WEST, "epoch": 4, "changed": False, "set_by": f"plan t ({run.execution_id})"}
    assert len(ctx.control.sets) == 1


def test_wait_replication_waits_until_the_switch_point_is_applied(tmp_path):
    source = FakeSource(head=12, step=3)
    ctx = _ctx(source)
    run = _run(ctx, _plan(tmp_path, "    - kind: wait_replication\n"))
    run.snapshot = {EAST: 12}
    out = wait_replication(run, Step("wait_replication", "w", 1, params={"poll": 0.001}), time.monotonic() + 5)
    assert out[EAST]["confirmed"] is True and out[EAST]["switch_point"] == 12
    assert source.applied == {"objects": 12, "state": 12}


def test_an_unreachable_source_is_waited_for_max_wait_then_recorded_unconfirmed(tmp_path):
    ctx = _ctx(FakeSource(head=None, applied={"objects": 4, "state": 5}))
    run = _run(ctx, _plan(tmp_path, "    - kind: wait_replication\n"))
    run.snapshot = {EAST: None}
    started = time.monotonic()
    out = wait_replication(run, Step("wait_replication", "w", 1, params={"max_wait": 0.3, "poll": 0.01}),
                           time.monotonic() + 5)
    assert time.monotonic() - started >= 0.3
    assert out[EAST]["confirmed"] is False and out[EAST]["applied_through"] == {"objects": 4, "state": 5}
    assert out[EAST]["last_known_source_head"] == 5


def test_a_paused_direction_fails_the_wait_with_a_reason(tmp_path):
    ctx = _ctx(FakeSource(head=9, paused=["state"]))
    run = _run(ctx, _plan(tmp_path, "    - kind: wait_replication\n"))
    run.snapshot = {EAST: 9}
    with pytest.raises(StepFailed, match="replication of state from us-east-1 is paused"):
        wait_replication(run, Step("wait_replication", "w", 1, params={"poll": 0.01}), time.monotonic() + 5)


def test_settle_waits_for_the_old_owner_to_see_the_new_epoch_and_go_quiet(tmp_path):
    source = FakeSource(head=20, step=20)
    peers = FakePeers(activity={EAST: PeerActivity(epoch_seen=2, busy=True, feed_head=18)})
    ctx = _ctx(source, active=WEST, epoch=3, peers=peers)
    run = _run(ctx, _plan(tmp_path, "    - kind: wait_replication\n"))

    def old_owner_catches_up() -> None:
        time.sleep(0.3)
        peers.seen[EAST] = PeerActivity(epoch_seen=3, busy=False, feed_head=20)

    threading.Thread(target=old_owner_catches_up).start()
    out = wait_replication(run, Step("wait_replication", "w", 1, params={"settle": True, "max_wait": 5}),
                           time.monotonic() + 5)
    assert out[EAST]["settled"] == {"settled": True, "epoch_seen": 3, "head": 20}
    assert out[EAST]["confirmed"] is True and out[EAST]["switch_point"] == 20


def test_health_check_reports_what_the_region_said(tmp_path):
    ctx = _ctx(FakeSource(), peers=FakePeers(health={WEST: "ok", EAST: "failing"}))
    run = _run(ctx, _plan(tmp_path, "    - kind: routing_control\n"))
    ok = health_check(run, Step("health_check", "h", 1, params={"region": WEST}), time.monotonic() + 1)
    assert ok["status"] == "ok"
    with pytest.raises(StepFailed, match="us-east-1 is failing, expected ok"):
        health_check(run, Step("health_check", "h", 1, params={"region": EAST}), time.monotonic() + 0.3)


def test_the_runner_records_each_step_and_takes_the_rto_at_the_step_that_ends_it(tmp_path):
    calls: list[str] = []
    registry = generic_steps()
    registry.register(StepKind("resume", lambda run, step, deadline: calls.append("resume") or {"ok": 1},
                               ends_rto=True))
    registry.register(StepKind("after", lambda run, step, deadline: time.sleep(0.2) or {}))
    plan = _plan(tmp_path, "    - kind: routing_control\n    - kind: resume\n    - kind: after\n", registry)
    ctx = _ctx(FakeSource())
    record = _run(ctx, plan, registry=registry).run()
    assert record.status == ExecutionStatus.SUCCEEDED and calls == ["resume"]
    assert [s.status for s in record.steps] == [StepStatus.SUCCEEDED] * 3
    # the RTO ends at `resume`, before `after` slept
    assert record.rto_seconds is not None and record.rto_seconds < (record.ended_at or 0) - record.started_at
    saved = ctx.saved[record.execution_id]
    assert saved["status"] == "SUCCEEDED" and saved["steps"][0]["output"]["epoch"] == 4
    assert ctx.counted == ["succeeded"]


def test_a_failing_step_stops_the_workflow_and_fails_the_execution(tmp_path):
    registry = generic_steps()

    def broken(run, step, deadline):
        raise StepFailed("the disk is on fire")

    registry.register(StepKind("broken", broken))
    plan = _plan(tmp_path, "    - kind: broken\n    - kind: routing_control\n", registry)
    ctx = _ctx(FakeSource())
    record = _run(ctx, plan, registry=registry).run()
    assert record.status == ExecutionStatus.FAILED and len(record.steps) == 1
    assert record.steps[0].error == "the disk is on fire" and ctx.control.sets == []


def test_manual_approval_waits_for_approve_and_one_switch_runs_at_a_time(tmp_path):
    plan = _plan(tmp_path, "    - kind: manual_approval\n      timeout: 10\n    - kind: routing_control\n")
    ctx = _ctx(FakeSource())
    runner = SwitchRunner(ctx, generic_steps())
    record = runner.start(plan, WEST, practice=False, started_by="test")
    deadline = time.monotonic() + 5
    while ctx.saved[record.execution_id]["status"] != "WAITING_APPROVAL":
        assert time.monotonic() < deadline, "never waited for approval"
        time.sleep(0.01)
    with pytest.raises(SwitchBusy):
        runner.start(plan, WEST, practice=False, started_by="test")
    assert runner.approve(record.execution_id, "alice")
    while not record.finished:
        assert time.monotonic() < deadline + 5
        time.sleep(0.01)
    assert record.status == ExecutionStatus.SUCCEEDED
    assert record.steps[0].output["approved_by"] == "alice" and record.waiting_for is None
    assert not runner.approve(record.execution_id, "bob")  # finished: nothing to approve


def test_a_plan_naming_a_kind_no_workload_registered_is_refused_with_its_line(tmp_path):
    with pytest.raises(ConfigError, match=r"plan.yaml:7: unknown step kind 'reconcile'"):
        _plan(tmp_path, "    - kind: routing_control\n    - kind: reconcile\n")
