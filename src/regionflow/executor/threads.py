"""Thread executor: work on threads of the calling process, for a one-shot run on one machine.

polars, hashing and file I/O let go of the GIL for most of a chunk's work, so on one machine threads keep
the cores about as busy as worker processes do, without what processes cost per run: an interpreter and
its imports each (about 0.5 s of CPU), tasks pickled both ways, and the reference index loaded once per
process. `regionflow process` runs on threads by default. A region keeps its process pool, where a worker
is isolated from the orchestrator and can be lost (killed) alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from regionflow.executor.base import ExecutorStatus, InFlight

T = TypeVar("T")
R = TypeVar("R")


class ThreadExecutor:
    def __init__(self, workers: int = 2):
        self.workers = max(1, workers)
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight = InFlight()

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R | BaseException]]:
        """Run fn over items on the threads, at most 2 x workers in flight so memory stays bounded."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="chunk")
        queue = iter(items)
        running: dict[Future, T] = {}
        try:
            while True:
                for item in queue:
                    running[self._pool.submit(fn, item)] = item
                    self._in_flight.add(1)
                    if len(running) >= 2 * self.workers:
                        break
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    item = running.pop(fut)
                    self._in_flight.add(-1)
                    failure = fut.exception()
                    yield item, (failure if failure is not None else fut.result())
        finally:
            # A caller that stops early leaves nothing running behind it.
            for fut in running:
                fut.cancel()
            wait(running)
            self._in_flight.add(-len(running))

    def warm_up(self) -> None:
        """Nothing to start ahead: threads start with the first items."""

    def status(self) -> ExecutorStatus:
        return ExecutorStatus(kind="threads", address="local", workers=self.workers, in_flight=self._in_flight.count)

    def close(self) -> None:
        """Wait for the running work and stop the threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
