"""A hybrid logical clock as one 64-bit integer: physical milliseconds << 16 | logical counter.

Timestamps from one clock strictly increase even when the wall clock stalls or steps back; update()
merges a timestamp seen from another region so later local timestamps order after it. A logical
counter that overflows carries into the millisecond part, which keeps the order total.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

LOGICAL_BITS = 16
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1


class HybridClock:
    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._last = 0
        self._lock = threading.Lock()

    def _physical(self) -> int:
        return int(self._wall() * 1000) << LOGICAL_BITS

    def now(self) -> int:
        """A timestamp greater than every one this clock issued or saw before."""
        return self.reserve(1)

    def update(self, remote: int) -> int:
        """Merge a remote timestamp; return a local timestamp greater than it and than any issued."""
        return self.reserve(1, after=remote)

    def reserve(self, n: int = 1, *, after: int = 0) -> int:
        """Issue n consecutive timestamps, all greater than after; return the first."""
        if n < 1:
            raise ValueError(f"reserve needs n >= 1, got {n}")
        with self._lock:
            first = max(self._physical(), self._last + 1, after + 1)
            self._last = first + n - 1
            return first

    @staticmethod
    def physical_ms(ts: int) -> int:
        return ts >> LOGICAL_BITS

    @staticmethod
    def logical(ts: int) -> int:
        return ts & LOGICAL_MASK
