"""What the region switch needs from the region that runs it, as small Protocols.

switch/ knows no region internals and no workload: the region implements SwitchContext, and a
workload's steps find their own service through SwitchContext.service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from regionflow.control.base import ControlState
from regionflow.switch.model import Group, Plan, Step
from regionflow.switch.records import StepRecord

T = TypeVar("T")


class StepFailed(Exception):
    """The step did not reach its goal; the message says why."""


class StepAborted(StepFailed):
    """The step decided the execution stops here, on purpose (not retried); the message says why."""


class SwitchControl(Protocol):
    def get(self, fresh: bool = False) -> ControlState:
        """The routing control (fresh=True: not from a cache)."""
        ...

    def set_active(self, region: str, expected_epoch: int, *, by: str = "") -> ControlState:
        """Compare-and-set on the epoch (StaleEpoch if it moved)."""
        ...


class ReplicationView(Protocol):
    """This region's replication from each other region."""

    def sources(self) -> list[str]:
        """The regions this one replicates from."""
        ...

    def source_head(self, source: str) -> int | None:
        """The source's feed head now, asked over the network; None when it cannot be reached."""
        ...

    def applied(self, source: str) -> dict[str, int]:
        """The checkpoint of each kind (objects, state): how far this region has applied."""
        ...

    def caught_up_to(self, source: str, seq: int) -> bool:
        """Whether every change of source up to seq has been applied here (every kind)."""
        ...

    def paused_kinds(self, source: str) -> list[str]:
        """The kinds whose replication from source is paused now."""
        ...

    def reachable(self, source: str) -> bool:
        """Whether the last replication pass could read source."""
        ...

    def backlog(self, source: str) -> dict[str, int]:
        """Changes known not yet applied, per kind, as of the last pass."""
        ...

    def last_known_head(self, source: str) -> int:
        """The highest feed head of source seen by any pass."""
        ...


@dataclass(frozen=True)
class PeerActivity:
    """Another region as it reports itself: the epoch it has seen, work in hand, and its feed head."""

    epoch_seen: int | None
    busy: bool
    feed_head: int | None


class Peers(Protocol):
    """Every region of the topology (the running one included), asked over its API."""

    def deep_health(self, region: str) -> str:
        """"ok", "failing", or why the region could not be asked (e.g. "unreachable (ConnectError)")."""
        ...

    def activity(self, region: str) -> PeerActivity | None:
        """What region reports of itself; None when it cannot be reached."""
        ...


class SwitchContext(Protocol):
    """The region that runs a plan, as the switch sees it."""

    @property
    def name(self) -> str:
        """The region's name."""
        ...

    @property
    def control(self) -> SwitchControl: ...

    @property
    def replication(self) -> ReplicationView: ...

    @property
    def peers(self) -> Peers: ...

    def save_execution(self, record: dict[str, Any]) -> None:
        """Persist an execution record (replicated like every state change)."""
        ...

    def count_execution(self, status: str) -> None:
        """Count a finished execution (metrics)."""
        ...

    def service(self, kind: type[T]) -> T:
        """The region's service of that type (a workload's steps reach their workload through it)."""
        ...


class StepRun(Protocol):
    """What a step sees of the execution it belongs to."""

    ctx: SwitchContext
    plan: Plan
    target: str
    practice: bool
    execution_id: str
    epoch: int | None
    snapshot: dict[str, int | None]
    missing: list[dict[str, Any]]
    approved_by: str

    def waiting_for_approval(self, step: Step, until: float, on_timeout: str) -> None:
        """Record that the execution waits for a person to approve (until: epoch seconds), and accept
        approvals from now on."""
        ...

    def wait_approved(self, timeout: float) -> bool:
        """Block up to timeout seconds for approval; True once approved."""
        ...

    def approval_ended(self) -> None:
        """The wait is over (approved or timed out): refuse approvals until the next wait."""
        ...

    def run_workflow(self, workflow: list[Step | Group], depth: int) -> list[StepRecord]:
        """Run a (child) workflow; returns its step records."""
        ...

