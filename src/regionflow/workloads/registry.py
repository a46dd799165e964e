"""The step registry of every workload: generic region-switch steps plus each workload's own."""

from __future__ import annotations

from functools import cache

from regionflow.switch.registry import StepRegistry
from regionflow.switch.steps import generic_steps


@cache
def step_registry() -> StepRegistry:
    """Every step kind a plan may use: the generic ones and each workload's."""
    from regionflow.workloads.batch.reconcile import register_steps as register_batch_steps
    from regionflow.workloads.ledger.steps import register_steps as register_ledger_steps

    steps = generic_steps()
    register_batch_steps(steps)
    register_ledger_steps(steps)
    return steps
