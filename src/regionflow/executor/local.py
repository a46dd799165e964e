"""Local executor: a process pool (spawned, so polars' threads are never forked), or inline for 1 worker."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from regionflow.executor.base import ExecutorStatus, InFlight

T = TypeVar("T")
R = TypeVar("R")


WARM_UP_TIMEOUT = 60.0  # seconds warm_up waits for the workers to be ready (a loaded machine's bound)


def _start_worker(parent_pid: int, preload: tuple[str, ...], ready: Any = None) -> None:
    """Runs in each worker as it starts: follow the parent, import what the tasks will need, say so."""
    _exit_with_parent(parent_pid)
    for module in preload:
        importlib.import_module(module)
    if ready is not None:
        ready.put(os.getpid())


def _exit_with_parent(parent_pid: int) -> None:
    """Die when the orchestrator dies (even by SIGKILL) instead of lingering."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class LocalExecutor:
    def __init__(self, workers: int = 2, preload: tuple[str, ...] = ()):
        """preload: modules each worker imports as it starts (while the parent still prepares the work),
        so the first tasks do not wait for them."""
        self.workers = max(1, workers)
        self.preload = preload
        self._pool: ProcessPoolExecutor | None = None
        # Several jobs may map at once (a region runs jobs side by side on one pool): the pool is made,
        # and a broken one replaced, under this lock.
        self._lock = threading.Lock()
        self._in_flight = InFlight()
        self._context = multiprocessing.get_context("spawn")
        self._ready = self._context.SimpleQueue()  # each worker's pid once it has imported the preload

    def _ensure_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                while not self._ready.empty():  # what earlier pools' workers said and nobody read
                    self._ready.get()
                self._pool = ProcessPoolExecutor(self.workers, mp_context=self._context, initializer=_start_worker,
                                                 initargs=(os.getpid(), self.preload, self._ready))
            return self._pool

    def warm_up(self, timeout: float = WARM_UP_TIMEOUT) -> None:
        """Start the worker processes now and wait (at most timeout) until each has imported the preload: a
        region serves once its workers are ready, not while they still compete with the first jobs for the
        CPU (spawning and importing takes each about half a CPU-second)."""
        if self.workers == 1:
            return
        pool = self._ensure_pool()
        for _ in range(self.workers):  # (the pool starts its processes as work arrives)
            pool.submit(os.getpid)
        deadline = time.monotonic() + timeout
        ready: set[int] = set()
        while len(ready) < self.workers and time.monotonic() < deadline:
            if self._ready.empty():
                time.sleep(0.02)
                continue
            ready.add(self._ready.get())

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R | BaseException]]:
        """Run fn over items, at most 2 x workers in flight so memory stays bounded."""
        if self.workers == 1:
            for item in items:
                try:
                    outcome: R | BaseException = self._in_flight.counted(fn)(item)
                except Exception as exc:  # reported to the caller, who decides on retries
                    outcome = exc
                yield item, outcome
            return
        queue = iter(items)
        running: dict[Future, tuple[T, ProcessPoolExecutor]] = {}
        try:
            yield from self._map(fn, queue, running)
        finally:
            self._in_flight.add(-len(running))  # a caller that stopped early: no longer waited for

    def _map(self, fn: Callable[[T], R], queue: Iterator[T],
             running: dict[Future, tuple[T, ProcessPoolExecutor]]) -> Iterator[tuple[T, R | BaseException]]:
        limit = 2 * self.workers
        while True:
            broken = False
            while len(running) < limit and not broken:
                try:
                    item = next(queue)
                except StopIteration:
                    break
                pool = self._ensure_pool()
                try:
                    running[pool.submit(fn, item)] = (item, pool)
                    self._in_flight.add(1)
                except BrokenProcessPool as exc:
                    self._discard_pool(pool)
                    yield item, exc
                    broken = True
            if not running:
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                item, pool = running.pop(fut)
                self._in_flight.add(-1)
                failure = BrokenProcessPool("the pool was replaced") if fut.cancelled() else fut.exception()
                if isinstance(failure, BrokenProcessPool):
                    self._discard_pool(pool)
                yield item, (failure if failure is not None else fut.result())

    def _discard_pool(self, broken: ProcessPoolExecutor) -> None:
        """Replace the pool if it is still the broken one (another caller may have replaced it already)."""
        with self._lock:
            if self._pool is broken:
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)

    def status(self) -> ExecutorStatus:
        return ExecutorStatus(kind="processes" if self.workers > 1 else "inline", address="local",
                              workers=self.workers, in_flight=self._in_flight.count)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
