"""The RoutingControl port: which region is active, under which epoch.

The control holds one record, ``(active_region, epoch)``, readable from every region. It changes only by
compare-and-set on the epoch, and every change raises the epoch by one, so the epoch never goes back and
two writers that read the same record cannot both succeed (DESIGN §3). Adapters: ``sqlite.py`` (a SQLite
file shared by the region processes of one machine) and ``etcd.py`` (a 3-member etcd cluster), both running
the same contract tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from regionflow.errors import ControlUnavailable, StaleEpoch

__all__ = ["ControlNotInitialized", "ControlOutcomeUnknown", "ControlState", "RoutingControl", "stale_epoch"]


class ControlNotInitialized(ControlUnavailable):
    """The control store is reachable but holds no record yet (nothing has called initialize())."""


class ControlOutcomeUnknown(ControlUnavailable):
    """A write (set_active, initialize) was sent, the store stopped answering before confirming it, and
    the store may still apply it later (a replicated store that regains its quorum can commit an entry
    its old leader had accepted). Unlike a plain ControlUnavailable this does NOT mean "nothing changed":
    re-read the control (get) before deciding; the record's updated_by names the writer that won."""


@dataclass(frozen=True)
class ControlState:
    """One value of the routing control.

    active_region: the one region allowed to start and advance work.
    epoch: grows by one at every change (1 when the record is created).
    updated_at: Unix time of the change.
    updated_by: who made the change (free text, e.g. "api@us-west-2" or "plan failover-1"); "" if unknown.
    """

    active_region: str
    epoch: int
    updated_at: float
    updated_by: str


def stale_epoch(expected_epoch: int, current: ControlState) -> StaleEpoch:
    """The error every adapter raises when a compare-and-set names an epoch that is not current."""
    return StaleEpoch(
        f"epoch {expected_epoch} is not current (current epoch is {current.epoch}, active "
        f"{current.active_region}); re-read the control and retry"
    )


@runtime_checkable
class RoutingControl(Protocol):
    """Active region + epoch with compare-and-set. Errors: StaleEpoch, ControlUnavailable."""

    def get(self) -> ControlState:
        """The current record, read from the store (not cached).

        Raises ControlUnavailable if the store cannot be reached, ControlNotInitialized (a subclass) if
        the record does not exist yet.
        """
        ...

    def set_active(self, region: str, expected_epoch: int, *, by: str = "") -> ControlState:
        """Compare-and-set: make ``region`` active if the current epoch is ``expected_epoch``.

        On success the record becomes (region, expected_epoch + 1), also when region is already the
        active one (the epoch always grows, which fences out work claimed under the old epoch); the change
        is appended to the history and the new record returned. Otherwise nothing changes and StaleEpoch
        is raised, naming the current epoch and region. Atomic across processes: of several callers
        racing with the same expected_epoch exactly one succeeds. ControlUnavailable means nothing
        changed, except its subclass ControlOutcomeUnknown (the change may still take effect).
        """
        ...

    def initialize(self, region: str) -> ControlState:
        """Create the record as (region, epoch 1) if it does not exist; else return it unchanged.

        Idempotent and safe to race: every region process calls it at start with the configured primary,
        and only the first call has an effect.
        """
        ...

    def history(self, limit: int = 50) -> list[ControlState]:
        """The last ``limit`` records (the creation and every change), newest first."""
        ...

    def close(self) -> None:
        """Release connections. The object must not be used afterwards."""
        ...
