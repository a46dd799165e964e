"""The one "wait until a condition holds" loop, bounded in time (the API clients, steps and tests use it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from regionflow.errors import RegionflowError

T = TypeVar("T")


class PollTimeout(RegionflowError):
    """poll_until ran out of time; the message names what it waited for."""


def poll_until(probe: Callable[[], T | None], *, timeout: float, interval: float = 0.1,
               what: str = "condition") -> T:
    """Call probe until it returns something truthy and return that; PollTimeout after timeout seconds.

    The probe runs at least once, so a condition already true costs no sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise PollTimeout(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
