"""The Executor port."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from regionflow.errors import RegionflowError

T = TypeVar("T")
R = TypeVar("R")


class ExecutorUnavailable(RegionflowError):
    """The executor cannot take work now (its cluster's scheduler is unreachable): like a storage outage,
    the work waits and is tried again, it is never failed for it."""


class WorkerLost(RegionflowError):
    """The worker running an item died (killed process, lost node) before it answered."""


@dataclass(frozen=True)
class ExecutorStatus:
    """What `status` and the console show of a region's executor."""

    kind: str  # "processes", "inline" (a one-worker pool), "threads", "dask"
    address: str  # where the work runs: "local", a scheduler's tcp:// address, a dask://local URL
    workers: int  # how many items run at once (worker threads on a cluster)
    in_flight: int  # items handed to workers and not answered yet
    available: bool = True
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class InFlight:
    """A count of items handed to workers and not answered yet, safe across threads."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return self._count

    def add(self, n: int) -> None:
        with self._lock:
            self._count += n

    def counted(self, fn: Callable[[T], R]) -> Callable[[T], R]:
        """fn, counted while it runs (for work run in this process)."""

        def run(item: T) -> R:
            self.add(1)
            try:
                return fn(item)
            finally:
                self.add(-1)

        return run


@runtime_checkable
class Executor(Protocol):
    @property
    def workers(self) -> int:
        """How many items run at once (what chunk sizes and the in-flight bound are chosen from)."""
        ...

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R | BaseException]]:
        """Run fn on every item in parallel; yield (item, result) or (item, exception) as each finishes.

        Every item taken from items is yielded exactly once. Items are taken as work frees up: at most
        2 x workers ahead of the results handed back. A lost worker (killed process, lost node) is
        reported as an exception for the items it held, and an executor that cannot reach its workers
        reports ExecutorUnavailable for the items; either way the executor stays usable for later
        calls. fn must be a picklable module-level function.
        """
        ...

    def warm_up(self) -> None:
        """Get ready now (start the workers, connect to the cluster) so the first items do not wait.
        Never raises for an unreachable cluster: map_unordered reports that per item."""
        ...

    def status(self) -> ExecutorStatus:
        """Kind, address, worker count and items in flight. Answers at once from what the executor knows,
        except that a cluster may be asked for its worker count (a bounded wait, at most every few s)."""
        ...

    def close(self) -> None:
        """Stop the workers (and a cluster the executor started)."""
        ...
