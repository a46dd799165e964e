"""Typed records of a region-switch execution and its steps, as persisted and served as JSON."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class ExecutionStatus(StrEnum):
    RUNNING = "RUNNING"
    WAITING_APPROVAL = "WAITING_APPROVAL"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    ABORTED = "ABORTED"  # stopped on purpose (a manual approval timed out with on_timeout: abort)


class StepStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


TERMINAL_EXECUTION_STATUSES = frozenset({ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.ABORTED})


@dataclass
class StepRecord:
    name: str
    kind: str
    line: int
    status: StepStatus = StepStatus.PENDING
    started: float | None = None
    ended: float | None = None
    attempts: int = 0
    output: Any = None
    error: str | None = None


@dataclass
class Execution:
    execution_id: str
    plan: str
    plan_path: str
    target: str
    region: str
    practice: bool
    started_by: str
    started_at: float
    desired_rto_seconds: float
    status: ExecutionStatus = ExecutionStatus.RUNNING
    ended_at: float | None = None
    rto_seconds: float | None = None
    steps: list[StepRecord] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)
    switch_point: dict[str, int | None] = field(default_factory=dict)
    error: str | None = None
    # Why a trigger started it (name, condition, observed value, true since, ...); None if a person did.
    trigger: dict[str, Any] | None = None
    # While a manual_approval step waits: its name, prompt, until (epoch seconds) and on_timeout.
    waiting_for: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_EXECUTION_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in the StateStore and served by the API (statuses as plain strings)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Execution:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        values["status"] = ExecutionStatus(values.get("status", ExecutionStatus.RUNNING))
        values["steps"] = [StepRecord(**{**s, "status": StepStatus(s.get("status", "PENDING"))})
                           for s in values.get("steps", [])]
        return cls(**values)


def merge_executions(answers: Mapping[str, Iterable[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One list of executions from each region's answer (region name -> its records), newest first.

    An execution is stored where it ran and replicated elsewhere; the copy of the region that ran it
    is authoritative, because a replica may lag behind it."""
    merged: dict[str, dict[str, Any]] = {}
    for region, records in answers.items():
        for rec in records:
            eid = rec.get("execution_id")
            if eid and (eid not in merged or rec.get("region") == region):
                merged[eid] = dict(rec)
    return sorted(merged.values(), key=lambda r: r.get("started_at") or 0, reverse=True)
