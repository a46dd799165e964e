"""The one registry of step kinds a plan may use: the generic ones (switch/steps.py) and those that
workloads register (batch: reconcile; the ledger: its database steps)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from regionflow.switch.context import StepRun
from regionflow.switch.model import Step

# A step takes the run, the step and its deadline (time.monotonic()), returns its JSON-able output or
# raises StepFailed. In practice mode it checks and changes nothing.
StepFn = Callable[[StepRun, Step, float], dict[str, Any]]


@dataclass(frozen=True)
class StepKind:
    name: str
    run: StepFn
    params: frozenset[str] = frozenset()
    # The achieved RTO is taken when a step of this kind succeeds: the region then takes work and has
    # resumed every job (otherwise at the end of the plan).
    ends_rto: bool = False


class StepRegistry:
    def __init__(self, kinds: Iterable[StepKind] = ()):
        self._kinds: dict[str, StepKind] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: StepKind) -> None:
        """Add a step kind; registering the same name twice is a programming error."""
        if kind.name in self._kinds:
            raise ValueError(f"step kind {kind.name!r} is registered twice")
        self._kinds[kind.name] = kind

    def get(self, name: str) -> StepKind:
        """The step kind called name (KeyError if none: plans are validated against kinds() first)."""
        return self._kinds[name]

    def kinds(self) -> dict[str, frozenset[str]]:
        """Every kind's name with the parameters it takes (what the plan parser validates against)."""
        return {name: kind.params for name, kind in self._kinds.items()}
