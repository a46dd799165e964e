"""The Executor port."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, TypeVar, runtime_checkable

T = TypeVar("T")
R = TypeVar("R")


@runtime_checkable
class Executor(Protocol):
    workers: int

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R | BaseException]]:
        """Run fn on every item in parallel; yield (item, result) or (item, exception) as each finishes.

        A lost worker (killed process, lost node) is reported as an exception for the items it held;
        the executor stays usable for later calls. fn must be a picklable module-level function.
        """
        ...

    def close(self) -> None:
        """Stop the workers."""
        ...
