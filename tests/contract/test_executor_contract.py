"""The Executor contract: every adapter (worker processes, inline, threads, a Dask cluster reached by its
scheduler's address, a Dask LocalCluster the executor starts) passes the same suite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from daskkit import DaskCluster, dask_cluster
from executorkit import exit_on_two, square_unless_three
from regionflow.executor import Executor, ExecutorUnavailable, LocalExecutor, ThreadExecutor, open_executor

ADAPTERS: dict[str, Callable[[pytest.FixtureRequest], Executor]] = {
    "processes-2": lambda _: LocalExecutor(2),
    "inline": lambda _: LocalExecutor(1),
    "threads-2": lambda _: ThreadExecutor(2),
    "threads-1": lambda _: ThreadExecutor(1),
    "dask-tcp": lambda request: open_executor(request.getfixturevalue("cluster").address, 1),
    "dask-local": lambda request: request.getfixturevalue("local_cluster"),
}
SHARED = {"dask-local"}  # one per module (a LocalCluster takes seconds to start), closed by its fixture
KINDS = {"processes-2": "processes", "inline": "inline", "threads-2": "threads", "threads-1": "threads",
         "dask-tcp": "dask", "dask-local": "dask"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """A real scheduler and two workers, shared by this module's dask-tcp cases."""
    with dask_cluster(tmp_path_factory.mktemp("dask")) as c:
        yield c


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[Executor]:
    """A Dask executor on a LocalCluster of two worker processes that it starts itself."""
    ex = open_executor("dask://local?workers=2", 1)
    try:
        yield ex
    finally:
        ex.close()


@pytest.fixture(params=sorted(ADAPTERS))
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    ex = ADAPTERS[request.param](request)
    ex.warm_up()
    try:
        yield ex
    finally:
        if request.param not in SHARED:
            ex.close()


def test_satisfies_the_protocol(executor: Executor) -> None:
    assert isinstance(executor, Executor) and executor.workers >= 1


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_status_names_the_kind_and_counts_the_work_in_flight(name: str, request: pytest.FixtureRequest) -> None:
    ex = ADAPTERS[name](request)
    try:
        ex.warm_up()
        before = ex.status()
        assert (before.kind, before.in_flight, before.available) == (KINDS[name], 0, True)
        seen_in_flight = []
        for _ in ex.map_unordered(square_unless_three, range(8)):
            seen_in_flight.append(ex.status().in_flight)
        # While results come back, the others are still out; once all are back, nothing is.
        assert max(seen_in_flight) >= 1 or ex.workers == 1
        after = ex.status()
        assert after.in_flight == 0 and after.workers == ex.workers >= 1
        assert after.to_dict()["kind"] == KINDS[name]
    finally:
        if name not in SHARED:
            ex.close()


def test_every_item_once_with_its_result_or_its_exception(executor: Executor) -> None:
    seen = dict(executor.map_unordered(square_unless_three, range(12)))
    assert sorted(seen) == list(range(12))
    assert isinstance(seen[3], ValueError) and str(seen[3]) == "three"
    assert {k: v for k, v in seen.items() if k != 3} == {k: k * k for k in range(12) if k != 3}


def test_a_failed_item_leaves_the_executor_usable(executor: Executor) -> None:
    first = dict(executor.map_unordered(square_unless_three, [3, 4]))
    assert isinstance(first[3], ValueError) and first[4] == 16
    assert dict(executor.map_unordered(square_unless_three, [5, 6])) == {5: 25, 6: 36}


class CountedItems:
    """0..n-1, counting how many the executor has taken so far."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pulled = 0

    def __iter__(self) -> Iterator[int]:
        for i in range(self.n):
            self.pulled += 1
            yield i


def test_items_are_taken_as_work_frees_up(executor: Executor) -> None:
    # At most 2 x workers items are taken ahead of the results handed back, so a long input is never
    # all in memory (or all marked started) at once.
    items = CountedItems(40)
    received = 0
    for _ in executor.map_unordered(square_unless_three, items):
        received += 1
        assert items.pulled - received <= 2 * executor.workers
    assert received == 40


def test_no_items_no_work(executor: Executor) -> None:
    assert list(executor.map_unordered(square_unless_three, [])) == []


def test_a_lost_worker_process_is_reported_and_replaced() -> None:
    ex = LocalExecutor(2)
    try:
        seen = dict(ex.map_unordered(exit_on_two, range(6)))
        assert isinstance(seen[2], BrokenProcessPool)
        # Items in flight with it may be reported lost too; the others complete.
        assert all(seen[i] == i or isinstance(seen[i], BrokenProcessPool) for i in range(6))
        assert dict(ex.map_unordered(exit_on_two, [4, 5])) == {4: 4, 5: 5}
    finally:
        ex.close()


def test_an_unreachable_scheduler_reports_every_item_unavailable(tmp_path: Path) -> None:
    cluster = DaskCluster(tmp_path)  # its address, with nothing listening there
    ex = open_executor(cluster.address, 1)
    try:
        ex.warm_up()  # logs, never raises
        seen = dict(ex.map_unordered(square_unless_three, range(3)))
        assert sorted(seen) == [0, 1, 2] and all(isinstance(v, ExecutorUnavailable) for v in seen.values())
        status = ex.status()
        assert not status.available and cluster.address in (status.error or "")
    finally:
        ex.close()


def test_a_caller_that_stops_early_takes_no_more_items_and_leaves_nothing_in_flight(executor: Executor) -> None:
    # A region that loses a job (fenced out) stops reading results: no further item may be taken (each is
    # a chunk marked started), and what was in flight is let go of.
    items = CountedItems(100)
    results = executor.map_unordered(square_unless_three, items)
    next(results)
    results.close()
    assert items.pulled <= 2 * executor.workers + 1
    assert executor.status().in_flight == 0
    assert dict(executor.map_unordered(square_unless_three, [5])) == {5: 25}
