"""Fault injection in a region process, each fault with a duration and automatic revert.

Faults live in a small JSON file in the region's data directory, so the region's worker processes see
storage faults too. Wrappers around the object store, the state store and the routing control consult
it on every call (a stat of the file, re-read only when it changed).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from regionflow.errors import ControlUnavailable, RegionflowError
from regionflow.ids import new_version_id

KINDS = {
    "storage_unreachable": "object store calls fail",
    "storage_slow": "object store calls wait `delay` seconds (default 0.5)",
    "state_unreachable": "state store calls fail",
    "state_slow": "state store calls wait `delay` seconds (default 0.5)",
    "control_unreachable": "routing control calls fail",
    "replication_paused": "replication into this region from `source` (default: every source) is paused",
    "crash": "the region process is killed (SIGKILL) at once",
    "crash_at": "the region process dies at crash point `point` (e.g. merge:midway)",
}
MAX_DURATION = 3600.0


class FaultInjected(RegionflowError):
    """A call failed because a fault was injected on purpose."""


class FaultRegistry:
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
        now = time.time()
        return [f for f in self._load() if f["until"] > now and (kind is None or f["kind"] == kind)]

    def check(self, area: str) -> None:
        """Raise or wait as the active faults on area (storage, state) say."""
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
        os.replace(tmp, self.path)

    def add(self, kind: str, duration: float, params: dict[str, Any] | None = None) -> dict[str, Any]:
        if kind not in KINDS:
            raise RegionflowError(f"unknown fault kind {kind!r} (known: {', '.join(sorted(KINDS))})")
        if not 0 < duration <= MAX_DURATION:
            raise RegionflowError(f"duration must be between 0 and {MAX_DURATION:g} seconds")
        fault = {"id": "fault-" + new_version_id(), "kind": kind, "params": dict(params or {}),
                 "started": time.time(), "until": time.time() + duration, "duration": duration}
        with self._lock:
            self._write([*self.active(), fault])
        return fault

    def clear(self, fault_id: str | None = None) -> list[dict[str, Any]]:
        """Remove one fault (or all); returns the removed ones."""
        with self._lock:
            current = self.active()
            removed = [f for f in current if fault_id is None or f["id"] == fault_id]
            self._write([f for f in current if f not in removed])
        return removed


class _Guarded:
    """Proxy that checks the registry before every method call of the wrapped object."""

    def __init__(self, inner: Any, registry: FaultRegistry, area: str, error: Callable[[str], Exception] | None = None):
        self._inner = inner
        self._registry = registry
        self._area = area
        self._error = error

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                self._registry.check(self._area)
            except FaultInjected as exc:
                if self._error is not None:
                    raise self._error(str(exc)) from None
                raise
            return attr(*args, **kwargs)

        return guarded


def guard_objects(store: Any, registry: FaultRegistry) -> Any:
    return _Guarded(store, registry, "storage")


def guard_state(store: Any, registry: FaultRegistry) -> Any:
    return _Guarded(store, registry, "state")


def guard_control(control: Any, registry: FaultRegistry) -> Any:
    return _Guarded(control, registry, "control", error=ControlUnavailable)
