"""In-memory fakes of what a region gives the switch (switch.context.SwitchContext), for unit tests."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

from regionflow.control.base import ControlState, stale_epoch
from regionflow.switch.context import PeerActivity

T = TypeVar("T")


class FakeControl:
    def __init__(self, active: str, epoch: int = 1):
        self.state = ControlState(active, epoch, time.time(), "test")
        self.sets: list[tuple[str, int]] = []

    def get(self, fresh: bool = False) -> ControlState:
        return self.state

    def set_active(self, region: str, expected_epoch: int, *, by: str = "") -> ControlState:
        if expected_epoch != self.state.epoch:
            raise stale_epoch(expected_epoch, self.state)
        self.sets.append((region, expected_epoch))
        self.state = ControlState(region, expected_epoch + 1, time.time(), by)
        return self.state


@dataclass
class FakeSource:
    head: int | None = 10  # None: unreachable
    applied: dict[str, int] = field(default_factory=lambda: {"objects": 0, "state": 0})
    paused: list[str] = field(default_factory=list)
    # Each poll of applied() moves the checkpoints this far towards the head (replication catching up).
    step: int = 0

    def advance(self) -> None:
        if self.head is not None and not self.paused:
            for kind in self.applied:
                self.applied[kind] = min(self.head, self.applied[kind] + self.step)


class FakeReplication:
    def __init__(self, **sources: FakeSource):
        self.by_name = {name.replace("_", "-"): src for name, src in sources.items()}

    def sources(self) -> list[str]:
        return list(self.by_name)

    def source_head(self, source: str) -> int | None:
        return self.by_name[source].head

    def applied(self, source: str) -> dict[str, int]:
        src = self.by_name[source]
        src.advance()
        return dict(src.applied)

    def caught_up_to(self, source: str, seq: int) -> bool:
        return all(v >= seq for v in self.by_name[source].applied.values())

    def paused_kinds(self, source: str) -> list[str]:
        return list(self.by_name[source].paused)

    def reachable(self, source: str) -> bool:
        return self.by_name[source].head is not None

    def backlog(self, source: str) -> dict[str, int]:
        src = self.by_name[source]
        head = src.head or 0
        return {k: max(0, head - v) for k, v in src.applied.items()}

    def last_known_head(self, source: str) -> int:
        return self.by_name[source].head or 0


class FakePeers:
    def __init__(self, health: dict[str, str] | None = None, activity: dict[str, PeerActivity | None] | None = None):
        self.health = health or {}
        self.seen = activity or {}

    def deep_health(self, region: str) -> str:
        return self.health.get(region, "unreachable (ConnectError)")

    def activity(self, region: str) -> PeerActivity | None:
        return self.seen.get(region)


class FakeContext:
    def __init__(self, name: str, control: FakeControl, replication: FakeReplication, peers: FakePeers | None = None,
                 services: dict[type, object] | None = None):
        self._name = name
        self._control = control
        self._replication = replication
        self._peers = peers or FakePeers()
        self._services = services or {}
        self.saved: dict[str, dict[str, Any]] = {}
        self.counted: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def control(self) -> FakeControl:
        return self._control

    @property
    def replication(self) -> FakeReplication:
        return self._replication

    @property
    def peers(self) -> FakePeers:
        return self._peers

    def save_execution(self, record: dict[str, Any]) -> None:
        self.saved[record["execution_id"]] = record

    def count_execution(self, status: str) -> None:
        self.counted.append(status)

    def service(self, kind: type[T]) -> T:
        found = self._services[kind]
        assert isinstance(found, kind)
        return found
