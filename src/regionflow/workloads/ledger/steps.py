"""The ledger's plan steps: database_failover, rotate_secret, database_switchover (see ops.py).

Each finds the region's LedgerOps through the switch context, so a plan with these steps runs only in a
topology with a ledger (anywhere else the step fails and says so).
"""

from __future__ import annotations

import time
from typing import Any

from regionflow.errors import RegionflowError
from regionflow.switch.context import StepFailed, StepRun
from regionflow.switch.model import Step
from regionflow.switch.registry import StepKind, StepRegistry
from regionflow.workloads.ledger.ops import LedgerOps

__all__ = ["register_steps"]


def _ops(run: StepRun) -> LedgerOps:
    try:
        return run.ctx.service(LedgerOps)
    except LookupError:
        raise StepFailed("this topology has no ledger ([ledger] in regionflow.toml): the database steps "
                         "have nothing to switch") from None


def _left(deadline: float) -> float:
    return max(1.0, deadline - time.monotonic())


def database_failover(run: StepRun, step: Step, deadline: float) -> dict[str, Any]:
    """Promote the target region's standby and wait until it takes writes; fence the old primary (if it
    answers, its writes are held first and the standby gets max_wait seconds to replay them)."""
    ops = _ops(run)
    region = str(step.params.get("region", run.target))
    try:
        return ops.failover(region, max_wait=float(step.params.get("max_wait", 5)), timeout=_left(deadline),
                            practice=run.practice)
    except RegionflowError as exc:
        raise StepFailed(str(exc)) from None


def rotate_secret(run: StepRun, step: Step, deadline: float) -> dict[str, Any]:
    """A new password for the ledger service on the primary; the regions reload it; the old one is revoked."""
    ops = _ops(run)
    try:
        return ops.rotate(wait=min(float(step.params.get("max_wait", 10)), _left(deadline)), practice=run.practice)
    except RegionflowError as exc:
        raise StepFailed(str(exc)) from None


def database_switchover(run: StepRun, step: Step, deadline: float) -> dict[str, Any]:
    """Planned, zero loss: the target's node becomes the primary and the old primary its standby (a fenced
    target has its missing transfers recorded and is rewound first)."""
    ops = _ops(run)
    region = str(step.params.get("region", run.target))
    try:
        return ops.switchover(region, timeout=_left(deadline), practice=run.practice)
    except RegionflowError as exc:
        raise StepFailed(str(exc)) from None


def register_steps(steps: StepRegistry) -> None:
    """The ledger workload's step kinds."""
    steps.register(StepKind("database_failover", database_failover, frozenset({"region", "max_wait"})))
    steps.register(StepKind("rotate_secret", rotate_secret, frozenset({"max_wait"})))
    steps.register(StepKind("database_switchover", database_switchover, frozenset({"region"})))
