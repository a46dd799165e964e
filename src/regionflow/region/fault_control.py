"""Fault control of one region: inject and clear chaos faults, and revert their side effects when they
expire (replication pauses, armed crash points, a frozen object-store server)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from regionflow.chaos.faults import Fault, FaultKind, FaultRegistry
from regionflow.errors import RegionflowError
from regionflow.replication.directions import ReplicationSet

log = logging.getLogger("regionflow.region")


class FaultControl:
    """signal_storage: sends a signal to the region's own object-store server (a SeaweedFS that `up` runs),
    so that storage_unreachable really stops it (SIGSTOP) until the fault ends (SIGCONT); None when the
    store is a directory or a server run elsewhere, where the fault stays in-process only."""

    def __init__(self, region: str, registry: FaultRegistry, replication: ReplicationSet,
                 signal_storage: Callable[[signal.Signals], object] | None = None):
        self.region = region
        self.registry = registry
        self.replication = replication
        self.signal_storage = signal_storage
        self._applied: dict[str, Fault] = {}  # injected faults whose side effects must be reverted

    def inject(self, kind: str, duration: float, params: dict[str, Any]) -> Fault:
        """Inject a fault for duration seconds (reverted automatically); see chaos.faults.KINDS."""
        if kind == "replication_paused" and params.get("source") not in (None, *self.replication.sources()):
            raise RegionflowError(f"{self.region} does not replicate from {params['source']!r}")
        if kind == "crash_at" and not params.get("point"):
            raise RegionflowError("crash_at needs a point, e.g. merge:midway")
        fault = self.registry.add_fault(kind, duration, params)
        if kind == "replication_paused":
            self.replication.set_paused(params.get("source"), True)
        elif kind == "crash_at":
            os.environ["REGIONFLOW_CRASH_AT"] = str(params["point"])
        elif kind == "crash":
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGKILL)).start()  # after the response is sent
        elif kind == "storage_unreachable" and self.signal_storage is not None:
            self.signal_storage(signal.SIGSTOP)
        self._applied[fault.id] = fault
        log.warning("fault injected: %s for %ss %s", kind, duration, params)
        return fault

    def clear(self, fault_id: str | None = None) -> list[Fault]:
        """Clear one fault (or all) now, reverting what it changed; returns the cleared ones."""
        removed = self.registry.clear_faults(fault_id)
        for fault in removed:
            self._revert(fault)
        return removed

    def _revert(self, fault: Fault) -> None:
        if self._applied.pop(fault.id, None) is None:
            return
        if fault.kind == FaultKind.REPLICATION_PAUSED:
            self.replication.set_paused(fault.params.get("source"), False)
        elif fault.kind == FaultKind.CRASH_AT:
            os.environ.pop("REGIONFLOW_CRASH_AT", None)
        elif fault.kind == FaultKind.STORAGE_UNREACHABLE and self.signal_storage is not None and not any(
                f.kind == FaultKind.STORAGE_UNREACHABLE for f in self._applied.values()):
            self.signal_storage(signal.SIGCONT)  # the last storage fault is gone: thaw the server
        log.warning("fault reverted: %s", fault.kind)

    def thaw(self) -> None:
        """Resume a frozen object-store server (the region is stopping: it must not stay stopped)."""
        if self.signal_storage is not None and any(
                f.kind == FaultKind.STORAGE_UNREACHABLE for f in self._applied.values()):
            self.signal_storage(signal.SIGCONT)

    def revert_expired(self, stop: threading.Event) -> None:
        """Until stop: revert the side effects of faults that expired."""
        while not stop.wait(0.5):
            active = {f.id for f in self.registry.active_faults()}
            for fault in list(self._applied.values()):
                if fault.id not in active:
                    try:
                        self._revert(fault)
                    except Exception:  # e.g. the state store is itself faulted: try again next round
                        log.exception("reverting fault %s", fault.id)
                        self._applied[fault.id] = fault
