"""The typed fault wrappers of chaos.faults: each port's calls honour the injected faults, then delegate."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from regionflow.chaos.faults import KINDS, Fault, FaultInjected, FaultKind, FaultRegistry
from regionflow.chaos.guards import (
    GuardedControl,
    GuardedObjectStore,
    GuardedStateStore,
    guard_control,
    guard_objects,
    guard_state,
)
from regionflow.control import ControlState, RoutingControl, open_control
from regionflow.errors import ControlUnavailable, RegionflowError
from regionflow.state import JobRecord, StateStore, open_state_store
from regionflow.storage import ObjectStore
from regionflow.storage.base import ObjectInfo
from regionflow.storage.file import FileObjectStore


@pytest.fixture
def registry(tmp_path: Path) -> FaultRegistry:
    return FaultRegistry(tmp_path / "faults.json")


@pytest.fixture
def files(tmp_path: Path) -> FileObjectStore:
    return FileObjectStore(tmp_path / "bucket")


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    s = open_state_store(f"sqlite:///{tmp_path}/state.db", "us-east-1")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def control(tmp_path: Path) -> Iterator[RoutingControl]:
    c = open_control(f"sqlite:///{tmp_path}/control.db")
    try:
        yield c
    finally:
        c.close()


def _port_methods(port: type) -> list[str]:
    return sorted(n for n, m in vars(port).items() if callable(m) and not n.startswith("_"))


# Every ObjectStore method with arguments that would succeed (or raise ObjectNotFound) on an empty store.
OBJECT_CALLS: dict[str, Callable[[ObjectStore], Any]] = {
    "put": lambda s: s.put("k", b"new"),
    "get": lambda s: s.get("k"),
    "open": lambda s: s.open("k"),
    "head": lambda s: s.head("k"),
    "list": lambda s: s.list(""),
    "copy": lambda s: s.copy("k", "k2"),
    "delete": lambda s: s.delete("k"),
    "scan": lambda s: s.scan(""),
    "adopt": lambda s: s.adopt("k"),
    "read_range": lambda s: s.read_range("k", 0, 10),
    "compose": lambda s: s.compose("k", ["k"], head=b"h"),
}


# ---------------------------------------------------------------------------------------------- typing


def test_constructors_return_the_typed_wrappers(registry: FaultRegistry, files: FileObjectStore,
                                                state: StateStore, control: RoutingControl) -> None:
    objects, guarded_state, guarded_control = (guard_objects(files, registry), guard_state(state, registry),
                                               guard_control(control, registry))
    assert type(objects) is GuardedObjectStore and isinstance(objects, ObjectStore)
    assert type(guarded_state) is GuardedStateStore and isinstance(guarded_state, StateStore)
    assert type(guarded_control) is GuardedControl and isinstance(guarded_control, RoutingControl)
    assert guarded_state.region == "us-east-1"  # a plain attribute of the port, read through


@pytest.mark.parametrize(("port", "wrapper"), [(ObjectStore, GuardedObjectStore), (StateStore, GuardedStateStore),
                                               (RoutingControl, GuardedControl)])
def test_wrappers_define_every_port_method_with_its_signature(port: type, wrapper: type) -> None:
    for name in _port_methods(port):
        assert name in vars(wrapper), f"{wrapper.__name__} does not define {name}"
        want, got = inspect.signature(getattr(port, name)), inspect.signature(getattr(wrapper, name))
        assert [(p.name, p.kind, p.default) for p in got.parameters.values()] == \
               [(p.name, p.kind, p.default) for p in want.parameters.values()], name


def test_plain_attributes_of_the_adapter_pass_through_unguarded(registry: FaultRegistry,
                                                                files: FileObjectStore) -> None:
    guarded = guard_objects(files, registry)
    registry.add_fault("storage_unreachable", 30)
    assert guarded.root == files.root  # type: ignore[attr-defined]  # not on the port, but read as before
    assert "FileObjectStore" in repr(guarded)


# ---------------------------------------------------------------------------------------------- storage


def test_no_fault_delegates(registry: FaultRegistry, files: FileObjectStore) -> None:
    guarded = guard_objects(files, registry)
    info = guarded.put("k", b"data", metadata={"a": "b"})
    assert files.head("k") == info == guarded.head("k")
    assert guarded.get("k") == b"data"
    assert [i.key for i in guarded.list()] == ["k"]


@pytest.mark.parametrize("method", sorted(OBJECT_CALLS))
def test_storage_unreachable_fails_every_call_and_leaves_the_store_alone(
        registry: FaultRegistry, files: FileObjectStore, tmp_path: Path, method: str) -> None:
    assert sorted(OBJECT_CALLS) == _port_methods(ObjectStore)  # a new port method needs a case here
    before: ObjectInfo = files.put("k", b"old")
    guarded = guard_objects(files, registry)
    registry.add_fault("storage_unreachable", 30)
    layout = sorted(p.relative_to(files.root) for p in files.root.rglob("*"))
    with pytest.raises(FaultInjected, match="storage unreachable"):
        OBJECT_CALLS[method](guarded)
    assert sorted(p.relative_to(files.root) for p in files.root.rglob("*")) == layout
    assert files.head("k") == before and files.get("k") == b"old"
    assert files.head("k2") is None


def test_storage_slow_delays_each_call(registry: FaultRegistry, files: FileObjectStore) -> None:
    guarded = guard_objects(files, registry)
    registry.add_fault("storage_slow", 30, {"delay": 0.2})
    t0 = time.monotonic()
    guarded.put("k", b"x")
    assert guarded.get("k") == b"x"
    assert time.monotonic() - t0 >= 0.4


def test_other_areas_do_not_affect_storage(registry: FaultRegistry, files: FileObjectStore) -> None:
    guarded = guard_objects(files, registry)
    registry.add_fault("state_unreachable", 30)
    registry.add_fault("control_unreachable", 30)
    assert guarded.put("k", b"x").size == 1


# ---------------------------------------------------------------------------------------------- state


def test_state_unreachable_fails_calls_and_writes_nothing(registry: FaultRegistry, state: StateStore) -> None:
    guarded = guard_state(state, registry)
    head = state.feed_head()
    registry.add_fault("state_unreachable", 30)
    job = JobRecord(job_id="job-1", input_key="input/a.csv", version_id="v1", input_etag="e", pipeline="default")
    with pytest.raises(FaultInjected, match="state unreachable"):
        guarded.create_job(job)
    with pytest.raises(FaultInjected):
        guarded.feed_head()
    with pytest.raises(FaultInjected):
        guarded.transition_job("job-1", epoch=1, from_status="INITIALIZED", to_status="SPLIT", rows_in=3)
    assert state.get_job("job-1") is None and state.feed_head() == head


def test_state_slow_delays(registry: FaultRegistry, state: StateStore) -> None:
    guarded = guard_state(state, registry)
    registry.add_fault("state_slow", 30, {"delay": 0.3})
    t0 = time.monotonic()
    assert guarded.list_jobs() == []
    assert time.monotonic() - t0 >= 0.3


# ---------------------------------------------------------------------------------------------- control


def test_control_unreachable_is_control_unavailable(registry: FaultRegistry, control: RoutingControl) -> None:
    guarded = guard_control(control, registry)
    first: ControlState = guarded.initialize("us-east-1")
    registry.add_fault("control_unreachable", 30)
    for call in (guarded.get, lambda: guarded.set_active("us-west-2", 1), lambda: guarded.initialize("x"),
                 guarded.history):
        with pytest.raises(ControlUnavailable, match="control unreachable") as info:
            call()
        assert not isinstance(info.value, FaultInjected)  # the port's error, as a real outage raises
    assert control.get() == first  # the refused set_active changed nothing


# ---------------------------------------------------------------------------------------------- expiry


def test_faults_expire(registry: FaultRegistry, files: FileObjectStore) -> None:
    guarded = guard_objects(files, registry)
    registry.add_fault("storage_unreachable", 0.3)
    with pytest.raises(FaultInjected):
        guarded.head("k")
    time.sleep(0.4)
    assert guarded.head("k") is None
    assert registry.active() == [] and registry.active_faults() == []


def test_clear_ends_a_fault_at_once(registry: FaultRegistry, files: FileObjectStore) -> None:
    guarded = guard_objects(files, registry)
    keep = registry.add_fault(FaultKind.STATE_SLOW, 30)
    gone = registry.add_fault(FaultKind.STORAGE_UNREACHABLE, 30)
    assert registry.clear_faults(gone.id) == [gone]
    assert guarded.head("k") is None
    assert registry.active_faults() == [keep]


# ---------------------------------------------------------------------------------------------- records


def test_fault_kinds_are_the_known_kinds() -> None:
    assert sorted(KINDS) == sorted(k.value for k in FaultKind)
    assert "storage_unreachable" in KINDS and FaultKind("crash_at") is FaultKind.CRASH_AT


def test_fault_records_roundtrip_through_the_file_format(registry: FaultRegistry) -> None:
    as_dict = registry.add_fault("replication_paused", 10, {"source": "us-west-2"}).to_dict()
    assert list(as_dict) == ["id", "kind", "params", "started", "until", "duration"]
    on_disk = json.loads(registry.path.read_text())
    assert on_disk == [as_dict] and type(on_disk[0]["kind"]) is str
    fault = Fault.from_dict(as_dict)
    assert fault.kind is FaultKind.REPLICATION_PAUSED and fault.params == {"source": "us-west-2"}
    assert fault.until == pytest.approx(fault.started + 10) and fault.duration == 10
    assert fault.to_dict() == as_dict
    assert registry.active_faults() == [fault] and registry.active("replication_paused") == [as_dict]
    assert registry.active_faults(FaultKind.CRASH) == []


def test_add_refuses_unknown_kinds_and_bad_durations(registry: FaultRegistry) -> None:
    with pytest.raises(RegionflowError, match="unknown fault kind 'meteor'"):
        registry.add_fault("meteor", 1)
    for duration in (0, -1, 3601):
        with pytest.raises(RegionflowError, match="duration"):
            registry.add_fault("crash", duration)
    assert not registry.path.exists()
