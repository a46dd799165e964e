"""How the orchestrator tells its host what happens: one small Protocol instead of loose callbacks.

A region implements it (ownership from the routing control, replication feed, metrics, logs); a local
run uses FixedOwner (always the owner, progress to the terminal).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Protocol

from regionflow.storage.base import ObjectInfo


class Lifecycle(StrEnum):
    """The lifecycle events the orchestrator emits (also the log message of each: the drill reads them)."""

    SPLIT = "split"
    CHUNK_STARTED = "chunk_started"
    CHUNK_SUCCEEDED = "chunk_succeeded"
    CHUNK_FAILED = "chunk_failed"


class OrchestratorEvents(Protocol):
    def owner(self) -> tuple[str, int]:
        """(active region, epoch) as the routing control says now."""
        ...

    def object_written(self, info: ObjectInfo) -> None:
        """A worker process wrote this object straight to the store (so the host can feed it)."""
        ...

    def notified(self, delivered: bool) -> None:
        """A notification attempt ended: True when delivered, False when the sink already had it."""
        ...

    def lifecycle(self, name: str, job_id: str) -> None:
        """A lifecycle event (a Lifecycle value)."""
        ...

    def progress(self, what: str, done: int, total: int) -> None:
        """Progress of a long step: "split" counts rows (total 0), "chunks" counts chunks."""
        ...


# (event, done, total) as the CLI's progress bar takes it.
ProgressHook = Callable[[str, int, int], None]


class FixedOwner:
    """Events of a one-region run: this region always owns the job; progress goes to an optional hook."""

    def __init__(self, region: str, epoch: int = 1, progress: ProgressHook | None = None):
        self._owner = (region, epoch)
        self._progress = progress

    def owner(self) -> tuple[str, int]:
        return self._owner

    def object_written(self, info: ObjectInfo) -> None:
        pass

    def notified(self, delivered: bool) -> None:
        pass

    def lifecycle(self, name: str, job_id: str) -> None:
        pass

    def progress(self, what: str, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress(what, done, total)
