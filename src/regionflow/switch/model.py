"""A region-switch plan as data: steps, parallel groups, and the plan (parsed by plan.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from regionflow.errors import ConfigError
from regionflow.switch.expr import Expr


@dataclass
class Step:
    kind: str
    name: str
    line: int
    timeout: float = 60.0
    retries: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    child: Plan | None = None  # for child_plan


@dataclass
class Group:
    """Steps run at the same time; the group ends when all have."""

    steps: list[Step]
    line: int


@dataclass(frozen=True)
class Condition:
    """What a trigger watches: one of CONDITION_KINDS (switch/triggers.py says how each is read)."""

    kind: str
    region: str | None = None  # region_unhealthy, canary_failing; `from` of replication_lag_above (None: any)
    threshold: float | None = None  # replication_lag_above, in seconds
    expr: Expr | None = None

    def describe(self) -> str:
        """The condition as written in the plan, e.g. "region_unhealthy: us-east-1"."""
        if self.kind == "expr":
            assert self.expr is not None
            return f"expr: {self.expr.text}"
        if self.kind == "replication_lag_above":
            return f"replication_lag_above: {self.threshold:g}s" + (f" from {self.region}" if self.region else "")
        return f"{self.kind}: {self.region}"


CONDITION_KINDS = ("region_unhealthy", "canary_failing", "replication_lag_above", "expr")


@dataclass(frozen=True)
class Trigger:
    """Start the plan's workflow for `activate` once `condition` has held for `for_seconds`."""

    name: str
    activate: str
    condition: Condition
    for_seconds: float
    line: int
    description: str = ""


@dataclass
class Plan:
    name: str
    path: str
    regions: list[str]
    approach: str
    desired_rto_seconds: float
    workflows: dict[str, list[Step | Group]]
    text: str = ""
    triggers: list[Trigger] = field(default_factory=list)

    def workflow(self, region: str) -> list[Step | Group]:
        if region not in self.workflows:
            raise ConfigError(f"{self.path}: plan {self.name!r} has no workflow for activating {region!r} "
                              f"(it has: {', '.join(self.workflows)})")
        return self.workflows[region]
