"""The fault wrappers: one typed class per port (GuardedObjectStore, GuardedStateStore, GuardedControl), so
code holding a guarded store is type-checked against the port it implements. Each call first asks the
region's FaultRegistry (faults.py) whether its area is faulted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, Generic, TypeVar

from regionflow.chaos.faults import FaultInjected, FaultRegistry
from regionflow.control.base import ControlState, RoutingControl
from regionflow.errors import ControlUnavailable
from regionflow.state.base import (
    Change,
    ChunkRecord,
    JobRecord,
    NotificationRecord,
    ReferenceInfo,
    RejectRecord,
    StateStore,
)
from regionflow.storage.base import ObjectInfo, ObjectStore

__all__ = ["GuardedControl", "GuardedObjectStore", "GuardedStateStore", "guard_control", "guard_objects", "guard_state"]


_P = TypeVar("_P")


class _Guarded(Generic[_P]):
    """What the three port wrappers share: the wrapped adapter, the registry and the area they check."""

    _area = ""

    def __init__(self, inner: _P, registry: FaultRegistry) -> None:
        self._inner = inner
        self._registry = registry

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._inner!r})"

    def _checked(self) -> _P:
        """The wrapped adapter, once the registry allows a call in this area (raises or waits otherwise)."""
        self._registry.check(self._area)
        return self._inner

    if not TYPE_CHECKING:
        # Members of the adapter that are not on its port still work as they did with the old untyped
        # proxy: plain attributes (e.g. a store's root or url) pass through unguarded, extra methods are
        # guarded. Hidden from mypy so that code using the wrapper is checked against the port alone.
        def __getattr__(self, name: str) -> Any:
            inner = self.__dict__.get("_inner")
            if inner is None:  # during copy/unpickling, before __init__ ran: no recursion into _inner
                raise AttributeError(name)
            attr = getattr(inner, name)
            if not callable(attr) or name.startswith("_"):
                return attr

            def guarded(*args: Any, **kwargs: Any) -> Any:
                self._checked()
                return attr(*args, **kwargs)

            return guarded


class GuardedObjectStore(_Guarded[ObjectStore]):
    """An ObjectStore whose every call first honours the storage faults (storage_unreachable, storage_slow).

    The check happens when a method is called: an iterator from list() or a handle from open() that was
    obtained before a fault keeps working.
    """

    _area = "storage"

    def put(self, key: str, data: bytes | BinaryIO | Iterable[bytes], *, content_type: str = "application/octet-stream",
            metadata: dict[str, str] | None = None, version_id: str | None = None) -> ObjectInfo:
        """ObjectStore.put, after the fault check."""
        return self._checked().put(key, data, content_type=content_type, metadata=metadata, version_id=version_id)

    def get(self, key: str) -> bytes:
        """ObjectStore.get, after the fault check."""
        return self._checked().get(key)

    def open(self, key: str) -> BinaryIO:
        """ObjectStore.open, after the fault check (reads from the handle are not checked)."""
        return self._checked().open(key)

    def read_range(self, key: str, start: int, length: int) -> tuple[ObjectInfo, bytes]:
        """ObjectStore.read_range, after the fault check."""
        return self._checked().read_range(key, start, length)

    def head(self, key: str) -> ObjectInfo | None:
        """ObjectStore.head, after the fault check."""
        return self._checked().head(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """ObjectStore.list, after the fault check (made now, not when iteration starts)."""
        return self._checked().list(prefix)

    def copy(self, src: str, dst: str, *, metadata: dict[str, str] | None = None) -> ObjectInfo:
        """ObjectStore.copy, after the fault check."""
        return self._checked().copy(src, dst, metadata=metadata)

    def compose(self, key: str, parts: Iterable[str], *, head: bytes = b"",
                content_type: str = "application/octet-stream", metadata: dict[str, str] | None = None,
                ) -> ObjectInfo:
        """ObjectStore.compose, after the fault check."""
        return self._checked().compose(key, parts, head=head, content_type=content_type, metadata=metadata)

    def delete(self, key: str) -> bool:
        """ObjectStore.delete, after the fault check."""
        return self._checked().delete(key)

    def scan(self, prefix: str = "") -> Iterator[tuple[str, str]]:
        """ObjectStore.scan, after the fault check (made now, not when iteration starts)."""
        return self._checked().scan(prefix)

    def adopt(self, key: str) -> ObjectInfo | None:
        """ObjectStore.adopt, after the fault check."""
        return self._checked().adopt(key)


class GuardedControl(_Guarded[RoutingControl]):
    """A RoutingControl whose every call first honours control_unreachable, raised as ControlUnavailable.

    ControlUnavailable (not FaultInjected) because that is the port's error: callers that handle a real
    outage of the control handle the injected one the same way.
    """

    _area = "control"

    def _checked(self) -> RoutingControl:
        try:
            self._registry.check(self._area)
        except FaultInjected as exc:
            raise ControlUnavailable(str(exc)) from None
        return self._inner

    def get(self) -> ControlState:
        """RoutingControl.get, after the fault check."""
        return self._checked().get()

    def set_active(self, region: str, expected_epoch: int, *, by: str = "") -> ControlState:
        """RoutingControl.set_active, after the fault check."""
        return self._checked().set_active(region, expected_epoch, by=by)

    def initialize(self, region: str) -> ControlState:
        """RoutingControl.initialize, after the fault check."""
        return self._checked().initialize(region)

    def history(self, limit: int = 50) -> list[ControlState]:
        """RoutingControl.history, after the fault check."""
        return self._checked().history(limit)

    def close(self) -> None:
        """RoutingControl.close, after the fault check (as every call: a faulted control cannot be closed)."""
        self._checked().close()


class GuardedStateStore(_Guarded[StateStore]):
    """A StateStore whose every call first honours the state faults (state_unreachable, state_slow)."""

    _area = "state"

    # A plain attribute of the port: read (and written) through, never guarded, as with the old proxy.
    @property
    def region(self) -> str:
        """The wrapped store's region."""
        return self._inner.region

    @region.setter
    def region(self, value: str) -> None:
        self._inner.region = value

    def create_job(self, job: JobRecord) -> bool:
        """StateStore.create_job, after the fault check."""
        return self._checked().create_job(job)

    def get_job(self, job_id: str) -> JobRecord | None:
        """StateStore.get_job, after the fault check."""
        return self._checked().get_job(job_id)

    def list_jobs(self, status: str | None = None, limit: int | None = None,
                  input_key: str | None = None, input_prefix: str | None = None) -> list[JobRecord]:
        """StateStore.list_jobs, after the fault check."""
        return self._checked().list_jobs(status, limit, input_key, input_prefix)

    def list_jobs_unfinished(self) -> list[JobRecord]:
        """StateStore.list_jobs_unfinished, after the fault check."""
        return self._checked().list_jobs_unfinished()

    def transition_job(
        self, job_id: str, *, epoch: int, from_status: str | tuple[str, ...], to_status: str, **fields: Any
    ) -> JobRecord:
        """StateStore.transition_job, after the fault check."""
        return self._checked().transition_job(job_id, epoch=epoch, from_status=from_status, to_status=to_status,
                                               **fields)

    def claim_job(self, job_id: str, *, region: str, epoch: int) -> JobRecord:
        """StateStore.claim_job, after the fault check."""
        return self._checked().claim_job(job_id, region=region, epoch=epoch)

    def add_chunks(self, job_id: str, chunks: list[ChunkRecord], *, epoch: int) -> None:
        """StateStore.add_chunks, after the fault check."""
        self._checked().add_chunks(job_id, chunks, epoch=epoch)

    def record_split(self, job_id: str, chunks: list[ChunkRecord], *, epoch: int, rows_in: int) -> JobRecord:
        """StateStore.record_split, after the fault check."""
        return self._checked().record_split(job_id, chunks, epoch=epoch, rows_in=rows_in)

    def list_chunks(self, job_id: str) -> list[ChunkRecord]:
        """StateStore.list_chunks, after the fault check."""
        return self._checked().list_chunks(job_id)

    def start_chunk(self, job_id: str, idx: int, *, epoch: int) -> int:
        """StateStore.start_chunk, after the fault check."""
        return self._checked().start_chunk(job_id, idx, epoch=epoch)

    def start_chunks(self, job_id: str, idxs: list[int], *, epoch: int) -> dict[int, int]:
        """StateStore.start_chunks, after the fault check."""
        return self._checked().start_chunks(job_id, idxs, epoch=epoch)

    def complete_chunk(self, job_id: str, idx: int, *, epoch: int, out_key: str, out_etag: str, rows_ok: int,
                       rows_rejected: int, rejects: list[RejectRecord]) -> None:
        """StateStore.complete_chunk, after the fault check."""
        self._checked().complete_chunk(job_id, idx, epoch=epoch, out_key=out_key, out_etag=out_etag, rows_ok=rows_ok,
                                       rows_rejected=rows_rejected, rejects=rejects)

    def list_rejects(self, job_id: str, limit: int | None = None, offset: int = 0) -> list[RejectRecord]:
        """StateStore.list_rejects, after the fault check."""
        return self._checked().list_rejects(job_id, limit, offset)

    def count_rejects(self, job_id: str) -> int:
        """StateStore.count_rejects, after the fault check."""
        return self._checked().count_rejects(job_id)

    def load_reference(self, table: str, key_column: str, columns: list[str], parts: list[str],
                       rows: int) -> ReferenceInfo:
        """StateStore.load_reference, after the fault check."""
        return self._checked().load_reference(table, key_column, columns, parts, rows)

    def reference_info(self, table: str) -> ReferenceInfo | None:
        """StateStore.reference_info, after the fault check."""
        return self._checked().reference_info(table)

    def reference_parts(self, table: str) -> list[str]:
        """StateStore.reference_parts, after the fault check."""
        return self._checked().reference_parts(table)

    def record_notification(self, rec: NotificationRecord) -> bool:
        """StateStore.record_notification, after the fault check."""
        return self._checked().record_notification(rec)

    def mark_notification_sent(self, job_id: str) -> None:
        """StateStore.mark_notification_sent, after the fault check."""
        self._checked().mark_notification_sent(job_id)

    def mark_notified(self, job_id: str, *, epoch: int) -> JobRecord:
        """StateStore.mark_notified, after the fault check."""
        return self._checked().mark_notified(job_id, epoch=epoch)

    def get_notification(self, job_id: str) -> NotificationRecord | None:
        """StateStore.get_notification, after the fault check."""
        return self._checked().get_notification(job_id)

    def list_notifications(self) -> list[NotificationRecord]:
        """StateStore.list_notifications, after the fault check."""
        return self._checked().list_notifications()

    def feed_since(self, seq: int, limit: int = 1000, kind: str | None = None) -> list[Change]:
        """StateStore.feed_since, after the fault check."""
        return self._checked().feed_since(seq, limit, kind)

    def feed_page_json(self, seq: int, limit: int = 1000, kind: str | None = None) -> str:
        """StateStore.feed_page_json, after the fault check."""
        return self._checked().feed_page_json(seq, limit, kind)

    def feed_head(self) -> int:
        """StateStore.feed_head, after the fault check."""
        return self._checked().feed_head()

    def feed_stats(self, since: int) -> dict[str, Any]:
        """StateStore.feed_stats, after the fault check."""
        return self._checked().feed_stats(since)

    def record_object_change(self, key: str, info: dict[str, Any] | None, epoch: int = 0) -> None:
        """StateStore.record_object_change, after the fault check."""
        self._checked().record_object_change(key, info, epoch)

    def note_stored_object(self, key: str, version_id: str | None) -> None:
        """StateStore.note_stored_object, after the fault check."""
        self._checked().note_stored_object(key, version_id)

    def stored_versions(self, keys: list[str]) -> dict[str, str]:
        """StateStore.stored_versions, after the fault check."""
        return self._checked().stored_versions(keys)

    def apply_change(self, change: Change) -> bool:
        """StateStore.apply_change, after the fault check."""
        return self._checked().apply_change(change)

    def apply_changes(self, changes: list[Change]) -> int:
        """StateStore.apply_changes, after the fault check."""
        return self._checked().apply_changes(changes)

    def get_checkpoint(self, source: str) -> int:
        """StateStore.get_checkpoint, after the fault check."""
        return self._checked().get_checkpoint(source)

    def set_checkpoint(self, source: str, seq: int) -> None:
        """StateStore.set_checkpoint, after the fault check."""
        self._checked().set_checkpoint(source, seq)

    def apply_changes_and_checkpoint(self, source: str, changes: list[Change], seq: int) -> int:
        """StateStore.apply_changes_and_checkpoint, after the fault check."""
        return self._checked().apply_changes_and_checkpoint(source, changes, seq)

    def set_paused(self, source: str, paused: bool) -> None:
        """StateStore.set_paused, after the fault check."""
        self._checked().set_paused(source, paused)

    def is_paused(self, source: str) -> bool:
        """StateStore.is_paused, after the fault check."""
        return self._checked().is_paused(source)

    def replication_link(self, source: str) -> dict[str, Any]:
        """StateStore.replication_link, after the fault check."""
        return self._checked().replication_link(source)

    def save_execution(self, record: dict[str, Any]) -> None:
        """StateStore.save_execution, after the fault check."""
        self._checked().save_execution(record)

    def get_execution(self, execution_id: str) -> dict[str, Any] | None:
        """StateStore.get_execution, after the fault check."""
        return self._checked().get_execution(execution_id)

    def list_executions(self, limit: int = 100) -> list[dict[str, Any]]:
        """StateStore.list_executions, after the fault check."""
        return self._checked().list_executions(limit)

    def close(self) -> None:
        """StateStore.close, after the fault check."""
        self._checked().close()


def guard_objects(store: ObjectStore, registry: FaultRegistry) -> GuardedObjectStore:
    """store wrapped so that its calls honour the storage faults in registry."""
    return GuardedObjectStore(store, registry)


def guard_state(store: StateStore, registry: FaultRegistry) -> GuardedStateStore:
    """store wrapped so that its calls honour the state faults in registry."""
    return GuardedStateStore(store, registry)


def guard_control(control: RoutingControl, registry: FaultRegistry) -> GuardedControl:
    """control wrapped so that its calls honour control_unreachable (raised as ControlUnavailable)."""
    return GuardedControl(control, registry)
