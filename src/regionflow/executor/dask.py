"""Dask executor: items run as tasks on a Dask distributed cluster, so a region's work can grow past one
machine.

The cluster is either one someone already runs (`tcp://HOST:PORT`, its scheduler) or a LocalCluster this
executor starts and stops with itself (`dask://local?workers=N`). A task gets its item (a chunk's
description: where to read, where to write), not chunk data: tasks read and write the object store
themselves, so no rows pass through the scheduler or the caller.

Outages are reported per item, never raised: a worker that dies running an item gives WorkerLost (when
the scheduler gives up rescheduling it), an unreachable scheduler ExecutorUnavailable. The caller's own
retry rules decide what happens next; the executor drops its client on a lost connection and connects
again at the next call, so work resumes once the scheduler is back.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError
from typing import Any, TypeVar

from distributed import Client, Future, LocalCluster, as_completed
from distributed.scheduler import KilledWorker

from regionflow.executor.base import ExecutorStatus, ExecutorUnavailable, InFlight, WorkerLost
from regionflow.executor.url import ExecutorTarget, parse_executor

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("regionflow.executor")

CONNECT_TIMEOUT = 5.0  # seconds to reach a scheduler before the items are reported unavailable
INFO_TIMEOUT = 2.0  # seconds for the scheduler to say how many worker threads it has
INFO_TTL = 2.0  # seconds a worker count is reused before it is asked again
RESULT_TIMEOUT = 15.0  # seconds for a finished task's result to arrive (recomputed if its worker died)
RESUBMITS = 3  # times an item whose result keeps getting lost is submitted before it counts as an outage


class DaskExecutor:
    def __init__(self, target: ExecutorTarget | str, *, connect_timeout: float = CONNECT_TIMEOUT):
        self.target = parse_executor(target) if isinstance(target, str) else target
        if self.target.kind != "dask":
            raise ValueError(f"not a Dask executor: {self.target}")
        self.connect_timeout = connect_timeout
        self._client: Client | None = None
        self._cluster: LocalCluster | None = None
        # One client for every caller (a region maps several jobs at once); made and dropped under this lock.
        self._lock = threading.Lock()
        self._in_flight = InFlight()
        self._threads_seen = 0
        self._threads_at = 0.0
        self._error: str | None = None

    # -- the cluster ---------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        """The scheduler's address (a started LocalCluster's once it runs)."""
        if self.target.scheduler is not None:
            return self.target.scheduler
        cluster = self._cluster
        return cluster.scheduler_address if cluster is not None else "dask://local"

    def _connected(self) -> Client:
        """The client, connected (and the local cluster started) if it is not; ExecutorUnavailable if the
        scheduler cannot be reached."""
        with self._lock:
            client = self._client
            if client is not None and client.status == "running":
                return client
            if client is not None:  # lost its scheduler: start afresh rather than wait on its reconnects
                self._client = None
                _close_quietly(client)
            try:
                if self.target.is_local_cluster and self._cluster is None:
                    self._cluster = LocalCluster(
                        n_workers=self.target.local_workers, threads_per_worker=self.target.threads_per_worker,
                        processes=True, host="127.0.0.1", scheduler_port=0, dashboard_address=None,
                        worker_dashboard_address=None, silence_logs=logging.WARNING)
                self._client = Client(self.address, timeout=self.connect_timeout, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                self._error = f"Dask scheduler {self.address} unreachable: {exc}"
                raise ExecutorUnavailable(self._error) from None
            self._error = None
            self._threads_at = 0.0
            return self._client

    def _drop(self, client: Client) -> None:
        """Forget client if it is still the current one (its scheduler connection was lost)."""
        with self._lock:
            if self._client is not client:
                return
            self._client = None
        self._error = f"lost the connection to the Dask scheduler {self.address}"
        _close_quietly(client)

    @property
    def workers(self) -> int:
        """Worker threads on the cluster as last seen (asked again every few seconds); at least 1."""
        return max(1, self._threads())

    def _threads(self) -> int:
        """Worker threads on the cluster, asked of the scheduler at most every INFO_TTL seconds (workers
        join and leave a cluster at any time); the last count seen when it does not answer."""
        client = self._client
        if client is not None and client.status == "running" and time.monotonic() - self._threads_at > INFO_TTL:
            # (Stamped before asking: a scheduler that does not answer is asked again only after the TTL.)
            self._threads_at = time.monotonic()
            with contextlib.suppress(Exception):  # an answer that did not come: keep the last count
                self._threads_seen = sum(client.nthreads(callback_timeout=INFO_TIMEOUT).values())
        return self._threads_seen

    def warm_up(self) -> None:
        """Start the local cluster or connect to the scheduler now; an unreachable one is only logged."""
        try:
            self._connected()
            log.info("Dask executor on %s with %d worker thread(s)", self.address, self.workers)
        except ExecutorUnavailable as exc:
            log.warning("%s; chunks wait until it answers", exc)

    # -- the work ------------------------------------------------------------------------------------
    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R | BaseException]]:
        """Run fn over items as Dask tasks, at most 2 x worker threads in flight."""
        queue = iter(items)
        try:
            client = self._connected()
        except ExecutorUnavailable as exc:
            for item in queue:
                yield item, exc
            return
        running: dict[Future, tuple[T, int]] = {}  # future -> (item, times it was submitted)
        finished = as_completed(loop=client.loop)
        try:
            while True:
                limit = 2 * self.workers
                while len(running) < limit:
                    item = next(queue, _END)
                    if item is _END:
                        break
                    try:
                        fut = client.submit(fn, item, pure=False, retries=0)
                    except Exception as exc:  # the client closed under us: the scheduler is gone
                        self._drop(client)
                        yield item, ExecutorUnavailable(f"Dask scheduler {self.address}: {exc}")
                        continue
                    running[fut] = (item, 1)
                    self._in_flight.add(1)
                    finished.add(fut)
                if not running:
                    return
                fut = next(finished)
                item, submitted = running.pop(fut)
                outcome = self._outcome(client, fut)
                if outcome is _AGAIN and submitted < RESUBMITS:
                    # Its result was lost with a killed worker and the scheduler did not compute it again in
                    # time: submitted anew (tasks are idempotent), the scheduler is still there.
                    with contextlib.suppress(Exception):  # (the client closed under us: reported below)
                        again = client.submit(fn, item, pure=False, retries=0)
                        running[again] = (item, submitted + 1)
                        finished.add(again)
                        continue
                self._in_flight.add(-1)
                if outcome is _AGAIN:
                    self._drop(client)
                    outcome = ExecutorUnavailable(f"Dask scheduler {self.address}: the result of a task was lost "
                                                  f"{submitted} time(s)")
                yield item, outcome
        finally:
            self._in_flight.add(-len(running))
            for fut in running:  # a caller that stopped early leaves nothing queued on the cluster
                with contextlib.suppress(Exception):
                    fut.cancel()

    def _outcome(self, client: Client, fut: Future) -> Any:
        """The task's result, its own exception, or the outage that kept it from answering."""
        try:
            if fut.status in _RUN_AGAIN and client.status == "running":
                # It finished, then its result was lost with the worker holding it (another task may be
                # killing workers): the scheduler runs it again, so wait for that instead of calling the
                # connection lost.
                fut.exception(timeout=RESULT_TIMEOUT)  # waits for the new outcome, raises nothing
            if fut.status == "finished":
                return fut.result(timeout=RESULT_TIMEOUT)
            if fut.status == "error":
                exc = fut.exception(timeout=self.connect_timeout * 6)
                if isinstance(exc, KilledWorker):
                    return WorkerLost(f"the Dask worker running it died: {exc}")
                return exc
        except Exception as exc:  # the answer was lost on the way (connection, timeout, cancellation)
            if client.status == "running" and isinstance(exc, TimeoutError | CancelledError):
                return _AGAIN  # (a lost result the scheduler did not recompute; the connection is fine)
            self._drop(client)
            return ExecutorUnavailable(f"Dask scheduler {self.address}: {type(exc).__name__}: {exc}")
        # Cancelled: the client lost its scheduler and gave up every future it held.
        self._drop(client)
        return ExecutorUnavailable(f"lost the connection to the Dask scheduler {self.address}")

    def status(self) -> ExecutorStatus:
        client = self._client
        available = client is not None and client.status == "running"
        return ExecutorStatus(kind="dask", address=self.address, workers=self._threads() if available else 0,
                              in_flight=self._in_flight.count, available=available,
                              error=None if available else (self._error or "not connected yet"))

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            cluster, self._cluster = self._cluster, None
        if client is not None:
            _close_quietly(client)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=30)


_END: Any = object()
_RUN_AGAIN = ("pending", "lost")  # a future's states while the scheduler computes it (again)
_AGAIN: Any = object()  # _outcome: submit the item again


def _close_quietly(client: Client) -> None:
    with contextlib.suppress(Exception):
        client.close(timeout=2)
