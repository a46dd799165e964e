"""Fault injection in a region process, each fault with a duration and automatic revert.

Faults live in a small JSON file in the region's data directory, so the region's worker processes see
storage faults too. Wrappers around the object store, the state store and the routing control (guards.py)
consult it on every call (a stat of the file, re-read only when it changed).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from regionflow.errors import RegionflowError
from regionflow.ids import new_version_id

__all__ = ["KINDS", "MAX_DURATION", "Fault", "FaultInjected", "FaultKind", "FaultRegistry"]


class FaultKind(StrEnum):
    """What an injected fault does (the ``kind`` of a fault record)."""

    STORAGE_UNREACHABLE = "storage_unreachable"
    STORAGE_SLOW = "storage_slow"
    STATE_UNREACHABLE = "state_unreachable"
    STATE_SLOW = "state_slow"
    CONTROL_UNREACHABLE = "control_unreachable"
    REPLICATION_PAUSED = "replication_paused"
    CRASH = "crash"
    CRASH_AT = "crash_at"


# Keyed by FaultKind, which is a str: `"crash" in KINDS` and `sorted(KINDS)` behave as with plain keys.
KINDS: dict[str, str] = {
    FaultKind.STORAGE_UNREACHABLE: "object store calls fail",
    FaultKind.STORAGE_SLOW: "object store calls wait `delay` seconds (default 0.5)",
    FaultKind.STATE_UNREACHABLE: "state store calls fail",
    FaultKind.STATE_SLOW: "state store calls wait `delay` seconds (default 0.5)",
    FaultKind.CONTROL_UNREACHABLE: "routing control calls fail",
    FaultKind.REPLICATION_PAUSED: "replication into this region from `source` (default: every source) is paused",
    FaultKind.CRASH: "the region process is killed (SIGKILL) at once",
    FaultKind.CRASH_AT: "the region process dies at crash point `point` (e.g. merge:midway)",
}
MAX_DURATION = 3600.0


class FaultInjected(RegionflowError):
    """A call failed because a fault was injected on purpose."""


@dataclass(frozen=True)
class Fault:
    """One injected fault: active from ``started`` (Unix time) until ``until``.

    On disk and over the admin API a fault is the dict of to_dict(); other processes (the region's
    workers, older tools) read that format, so it must not change.
    """

    id: str
    kind: FaultKind
    params: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0
    until: float = 0.0
    duration: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"id", "kind", "params", "started", "until", "duration"}`` (kind as a plain str)."""
        return {"id": self.id, "kind": self.kind.value, "params": dict(self.params), "started": self.started,
                "until": self.until, "duration": self.duration}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """Parse the JSON form; ValueError for an unknown kind, KeyError for a missing field."""
        return cls(id=str(data["id"]), kind=FaultKind(data["kind"]), params=dict(data.get("params") or {}),
                   started=float(data["started"]), until=float(data["until"]), duration=float(data["duration"]))


class FaultRegistry:
    """The faults of one region, in a JSON file shared by the region process and its workers.

    active() returns the JSON dicts as stored, for the hot path (every guarded call checks it); the rest
    speaks Fault records.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._faults: list[dict[str, Any]] = []

    # -- reading (hot path) ------------------------------------------------------------------------
    def _load(self) -> list[dict[str, Any]]:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._mtime, self._faults = None, []
            return []
        if mtime != self._mtime:
            try:
                self._faults = json.loads(self.path.read_text())
            except (OSError, ValueError):
                return self._faults
            self._mtime = mtime
        return self._faults

    def active(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The faults in force now (optionally of one kind), as their JSON dicts."""
        now = time.time()
        return [f for f in self._load() if f["until"] > now and (kind is None or f["kind"] == kind)]

    def active_faults(self, kind: FaultKind | str | None = None) -> list[Fault]:
        """The faults in force now (optionally of one kind), as Fault records."""
        return [Fault.from_dict(f) for f in self.active(kind)]

    def check(self, area: str) -> None:
        """Raise FaultInjected or wait, as the active faults on area (storage, state, control) say."""
        faults = self.active()
        if not faults:
            return
        for f in faults:
            if f["kind"] == f"{area}_unreachable":
                raise FaultInjected(f"{area} unreachable (fault {f['id']} injected, {f['until'] - time.time():.0f}s "
                                    "left)")
        for f in faults:
            if f["kind"] == f"{area}_slow":
                time.sleep(float(f["params"].get("delay", 0.5)))

    # -- changing ----------------------------------------------------------------------------------
    def _write(self, faults: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".faults-")
        with os.fdopen(fd, "w") as fh:
            json.dump(faults, fh)
        os.replace(tmp, self.path)  # readers in other processes see the old list or the new one, never a part

    def add_fault(self, kind: FaultKind | str, duration: float, params: dict[str, Any] | None = None) -> Fault:
        """Inject a fault of kind for duration seconds; RegionflowError for an unknown kind or bad duration."""
        if kind not in KINDS:
            raise RegionflowError(f"unknown fault kind {kind!r} (known: {', '.join(sorted(KINDS))})")
        if not 0 < duration <= MAX_DURATION:
            raise RegionflowError(f"duration must be between 0 and {MAX_DURATION:g} seconds")
        now = time.time()
        fault = Fault(id="fault-" + new_version_id(), kind=FaultKind(kind), params=dict(params or {}),
                      started=now, until=now + duration, duration=duration)
        with self._lock:
            self._write([*self.active(), fault.to_dict()])
        return fault

    def clear_faults(self, fault_id: str | None = None) -> list[Fault]:
        """Remove one fault (or all); returns the removed ones."""
        with self._lock:
            current = self.active()
            removed = [f for f in current if fault_id is None or f["id"] == fault_id]
            self._write([f for f in current if f not in removed])
        return [Fault.from_dict(f) for f in removed]
