"""storage_unreachable on a region whose SeaweedFS regionflow runs: the server itself is frozen (SIGSTOP) for
the fault's duration and thawed (SIGCONT) when it is cleared, when it expires, and when the region stops."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from regionflow.chaos.faults import FaultRegistry
from regionflow.polling import poll_until
from regionflow.region.fault_control import FaultControl


class _NoReplication:
    def sources(self) -> list[str]:
        return []

    def set_paused(self, source: str | None, paused: bool) -> None:
        raise AssertionError("no replication fault in these tests")


def _control(tmp_path: Path) -> tuple[FaultControl, list[signal.Signals]]:
    sent: list[signal.Signals] = []
    control = FaultControl("us-east-1", FaultRegistry(tmp_path / "faults.json"), _NoReplication(),  # type: ignore[arg-type]
                           signal_storage=sent.append)
    return control, sent


def test_cleared_fault_thaws_the_server_once_the_last_storage_fault_is_gone(tmp_path: Path) -> None:
    control, sent = _control(tmp_path)
    first = control.inject("storage_unreachable", 60, {})
    control.inject("storage_unreachable", 60, {})
    assert sent == [signal.SIGSTOP, signal.SIGSTOP]
    control.clear(first.id)
    assert sent == [signal.SIGSTOP, signal.SIGSTOP]  # another storage fault still holds it
    control.clear()
    assert sent[-1] == signal.SIGCONT and sent.count(signal.SIGCONT) == 1


def test_expired_fault_thaws_the_server(tmp_path: Path) -> None:
    control, sent = _control(tmp_path)
    control.inject("storage_unreachable", 0.3, {})
    stop = threading.Event()
    reverter = threading.Thread(target=control.revert_expired, args=(stop,), daemon=True)
    reverter.start()
    try:
        poll_until(lambda: signal.SIGCONT in sent, timeout=10, interval=0.05, what="the thaw at expiry")
    finally:
        stop.set()
        reverter.join(timeout=5)
    assert sent == [signal.SIGSTOP, signal.SIGCONT]


def test_stopping_region_thaws_a_frozen_server_and_other_faults_do_not_touch_it(tmp_path: Path) -> None:
    control, sent = _control(tmp_path)
    control.inject("state_unreachable", 60, {})
    assert sent == []
    control.thaw()
    assert sent == []  # nothing frozen, nothing to resume
    control.inject("storage_unreachable", 60, {})
    control.thaw()
    assert sent == [signal.SIGSTOP, signal.SIGCONT]
