"""A region-switch plan as data: steps, parallel groups, and the plan (parsed by plan.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from regionflow.errors import ConfigError


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


@dataclass
class Plan:
    name: str
    path: str
    regions: list[str]
    approach: str
    desired_rto_seconds: float
    workflows: dict[str, list[Step | Group]]
    text: str = ""

    def workflow(self, region: str) -> list[Step | Group]:
        if region not in self.workflows:
            raise ConfigError(f"{self.path}: plan {self.name!r} has no workflow for activating {region!r} "
                              f"(it has: {', '.join(self.workflows)})")
        return self.workflows[region]
