"""The Executor contract: every adapter (worker processes, inline, threads) passes the same suite."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool

import pytest

from executorkit import exit_on_two, square_unless_three
from regionflow.executor import Executor, LocalExecutor, ThreadExecutor

ADAPTERS = {
    "processes-2": lambda: LocalExecutor(2),
    "inline": lambda: LocalExecutor(1),
    "threads-2": lambda: ThreadExecutor(2),
    "threads-1": lambda: ThreadExecutor(1),
}


@pytest.fixture(params=sorted(ADAPTERS))
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    ex = ADAPTERS[request.param]()
    try:
        yield ex
    finally:
        ex.close()


def test_satisfies_the_protocol(executor: Executor) -> None:
    assert isinstance(executor, Executor) and executor.workers >= 1


def test_every_item_once_with_its_result_or_its_exception(executor: Executor) -> None:
    seen = dict(executor.map_unordered(square_unless_three, range(12)))
    assert sorted(seen) == list(range(12))
    assert isinstance(seen[3], ValueError) and str(seen[3]) == "three"
    assert {k: v for k, v in seen.items() if k != 3} == {k: k * k for k in range(12) if k != 3}


def test_a_failed_item_leaves_the_executor_usable(executor: Executor) -> None:
    first = dict(executor.map_unordered(square_unless_three, [3, 4]))
    assert isinstance(first[3], ValueError) and first[4] == 16
    assert dict(executor.map_unordered(square_unless_three, [5, 6])) == {5: 25, 6: 36}


def test_items_are_taken_as_work_frees_up(executor: Executor) -> None:
    # At most 2 x workers items are taken ahead of the results handed back, so a long input is never
    # all in memory (or all marked started) at once.
    pulled = 0

    def items() -> Iterator[int]:
        nonlocal pulled
        for i in range(40):
            pulled += 1
            yield i

    received = 0
    for _ in executor.map_unordered(square_unless_three, items()):
        received += 1
        assert pulled - received <= 2 * executor.workers
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
