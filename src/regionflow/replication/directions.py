"""A region's replication from every other region: one Replicator per source, started and stopped
together, paused per kind, and read by the region switch (heads, checkpoints) and by status pages."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from regionflow.replication.replicator import KINDS, DirectionStatus, HeldBytes, Replicator, no_recipe
from regionflow.replication.source import FeedSource
from regionflow.state.base import StateStore
from regionflow.storage.base import ObjectStore


class ReplicationSet:
    """Implements switch.context.ReplicationView over this region's replicators."""

    def __init__(self, target: str, sources: Iterable[FeedSource], state: StateStore, objects: ObjectStore, *,
                 on_object: Callable[[str], None] | None = None, interval: float = 0.2, batch: int = 500,
                 ordered_delete: Callable[[str], bool] = lambda key: True,
                 held_bytes: HeldBytes = no_recipe):
        self.target = target
        self.state = state
        self.replicators = {
            source.name: Replicator(source, target, state, objects, on_object=on_object, interval=interval,
                                    batch=batch, ordered_delete=ordered_delete, held_bytes=held_bytes)
            for source in sources
        }

    def start(self) -> None:
        for rep in self.replicators.values():
            rep.start()

    def stop(self) -> None:
        for rep in self.replicators.values():
            rep.stop()

    def replicator(self, source: str) -> Replicator:
        """The replicator from source (KeyError: this region does not replicate from it)."""
        return self.replicators[source]

    # -- pause and resume --------------------------------------------------------------------------
    def set_paused(self, source: str | None, paused: bool, kinds: Iterable[str] = KINDS) -> None:
        """Pause (or resume) replication from source (None: every source) for the given kinds."""
        for name, rep in self.replicators.items():
            if source in (None, name):
                for kind in kinds:
                    self.state.set_paused(rep.cursor(kind), paused)

    # -- status --------------------------------------------------------------------------------------
    def status(self) -> list[DirectionStatus]:
        """Each direction's status as of its last pass, with the pause flags as they are now."""
        out = []
        for rep in self.replicators.values():
            paused_kinds = self.paused_kinds(rep.source.name)
            out.append(dataclasses.replace(rep.status, paused_kinds=paused_kinds, paused=bool(paused_kinds),
                                           checkpoint=dict(rep.status.checkpoint), backlog=dict(rep.status.backlog),
                                           lag_seconds=dict(rep.status.lag_seconds)))
        return out

    # -- ReplicationView -----------------------------------------------------------------------------
    def sources(self) -> list[str]:
        return list(self.replicators)

    def source_head(self, source: str) -> int | None:
        rep = self.replicators[source]
        try:
            return int(rep.source.stats(rep.checkpoint("state"))["head"])
        except Exception:  # SourceUnavailable, or an answer without a head: expected during a failover
            return None

    def applied(self, source: str) -> dict[str, int]:
        rep = self.replicators[source]
        return {kind: rep.checkpoint(kind) for kind in KINDS}

    def caught_up_to(self, source: str, seq: int) -> bool:
        return self.replicators[source].caught_up_to(seq)

    def paused_kinds(self, source: str) -> list[str]:
        rep = self.replicators[source]
        return [kind for kind in KINDS if self.state.is_paused(rep.cursor(kind))]

    def reachable(self, source: str) -> bool:
        return self.replicators[source].status.reachable

    def backlog(self, source: str) -> dict[str, int]:
        return dict(self.replicators[source].status.backlog)

    def last_known_head(self, source: str) -> int:
        return self.replicators[source].status.source_head
