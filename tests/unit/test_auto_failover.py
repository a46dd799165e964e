"""`regionflow init --auto-failover` and the region's side of triggers (its signals, the plan reload)."""

from __future__ import annotations

from pathlib import Path

import pytest
from switchfakes import FakeContext, FakeControl, FakeReplication, FakeSource

from regionflow.config import init_project, load_config
from regionflow.errors import ConfigError
from regionflow.region.metrics import RegionMetrics
from regionflow.region.triggers import RegionSignals, TriggerLoop
from regionflow.switch.expr import parse_expr
from regionflow.switch.model import Group, Step
from regionflow.switch.plan import load_plan
from regionflow.switch.runner import SwitchRunner
from regionflow.switch.triggers import CanaryResult, TriggerEngine
from regionflow.workloads.registry import step_registry

EAST, WEST = "us-east-1", "us-west-2"


def _shape(workflow: list[Step | Group]) -> list[tuple]:
    return [(s.name, s.kind, s.timeout, s.params) for s in workflow if isinstance(s, Step)]


def test_init_auto_failover_writes_the_plan_and_configures_it(tmp_path: Path) -> None:
    config = load_config(init_project(tmp_path, base_port=18600, auto_failover=True))
    assert config.plan == str(tmp_path / "plans" / "auto-failover.yaml")
    assert 'plan = "plans/auto-failover.yaml"' in (tmp_path / "regionflow.toml").read_text()
    plan = load_plan(config.plan_path, step_registry())
    [trigger] = plan.triggers
    assert (trigger.name, trigger.activate, trigger.condition.describe(), trigger.for_seconds) == \
        ("primary-down", WEST, f"region_unhealthy: {EAST}", 10.0)
    approval, *rest = plan.workflow(WEST)
    assert isinstance(approval, Step) and approval.kind == "manual_approval" and approval.timeout == 120
    assert approval.params["on_timeout"] == "proceed"
    # the rest is the built-in batch plan, step for step (the template must not drift from it)
    batch = load_plan(load_config(init_project(tmp_path / "plain", base_port=18610)).plan_path, step_registry())
    assert _shape(rest) == _shape(batch.workflow(WEST))
    assert _shape(plan.workflow(EAST)) == _shape(batch.workflow(EAST))
    assert batch.triggers == []


def test_init_auto_failover_keeps_an_existing_plan_unless_forced(tmp_path: Path) -> None:
    plan = tmp_path / "plans" / "auto-failover.yaml"
    plan.parent.mkdir()
    plan.write_text("# mine\n")
    with pytest.raises(ConfigError, match="auto-failover.yaml already exists"):
        init_project(tmp_path, base_port=18620, auto_failover=True)
    assert plan.read_text() == "# mine\n" and not (tmp_path / "regionflow.toml").exists()
    init_project(tmp_path, base_port=18620, auto_failover=True, force=True)
    assert "primary-down" in plan.read_text()


def test_init_without_auto_failover_sets_no_plan(tmp_path: Path) -> None:
    config = load_config(init_project(tmp_path, base_port=18630))
    assert config.plan is None and not (tmp_path / "plans" / "auto-failover.yaml").exists()


def test_an_expression_reads_the_regions_own_registry() -> None:
    metrics = RegionMetrics(WEST, [EAST, WEST])
    signals = RegionSignals(WEST, peers=None, replication=None, registry=metrics.registry,  # type: ignore[arg-type]
                            refresh=lambda: None, own_canary=lambda: CanaryResult(ok=False, at=1.0))
    failed = parse_expr('regionflow_canary_total{status="failed"} >= 2')
    assert not failed.evaluate(signals.metric_samples()).holds
    metrics.canary.labels("failed").inc(2)
    result = failed.evaluate(signals.metric_samples())
    assert result.holds and result.value == 2
    metrics.lag.labels(EAST, WEST, "state").set(7.5)
    assert parse_expr("max(regionflow_replication_lag_seconds) > 7").evaluate(signals.metric_samples()).holds
    assert signals.canary(WEST) == CanaryResult(ok=False, at=1.0)  # its own canary, not over the network


def test_the_loop_reports_a_broken_plan_and_picks_up_the_fixed_one(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"name: p\nregions: [{EAST}, {WEST}]\nworkflows:\n  {WEST}:\n    - kind: routing_control\n"
                    f"triggers:\n  - name: down\n    region_unhealthy: {EAST}\n    for: 10s\n    activte: {WEST}\n")
    ctx = FakeContext(WEST, FakeControl(EAST), FakeReplication(us_east_1=FakeSource()))
    engine = TriggerEngine(WEST, SwitchRunner(ctx, step_registry()))
    loop = TriggerLoop(engine, signals=None, control=ctx.control,  # type: ignore[arg-type]
                       plan_path=str(plan), steps=step_registry(), region_names=[EAST, WEST])
    assert loop.tick() is None
    status = loop.status()
    assert status["problem"].endswith("plan.yaml:10: a trigger has no key 'activte' (keys: activate, canary_failing, "
                                      "description, expr, for, from, name, region_unhealthy, "
                                      "replication_lag_above)")
    assert status["triggers"] == [] and status["ticks"] == 1
    plan.write_text(plan.read_text().replace("activte", "activate"))
    loop.signals = _Down()  # type: ignore[assignment]
    loop.tick()
    [state] = loop.status()["triggers"]
    assert loop.status()["problem"] == "" and state["name"] == "down" and state["holds"]
    assert state["detail"] == f"{EAST} deep health: unreachable (ConnectError)"


class _Down:
    def deep_health(self, region: str) -> str:
        return "unreachable (ConnectError)"
