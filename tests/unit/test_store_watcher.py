"""The store watcher on a directory bucket and a SQLite state store: it feeds what the store holds and the
region does not know (the crash gap between a put and its feed record), once; never a replicated copy; and
leaves a put of regionflow's own to its writer while it is younger than the settle time."""

from __future__ import annotations

from pathlib import Path

from regionflow.replication.feeding import FeedingObjectStore, object_image
from regionflow.replication.watcher import StoreWatcher
from regionflow.state import open_state_store
from regionflow.storage.file import FileObjectStore


class Clock:
    def __init__(self) -> None:
        self.now = 2e9  # far after any put, unless a test moves it back

    def __call__(self) -> float:
        return self.now


def _setup(tmp_path: Path):
    store = FileObjectStore(tmp_path / "bucket")
    state = open_state_store(f"sqlite:///{tmp_path / 'state.db'}", "us-east-1")
    found: list[str] = []
    clock = Clock()

    def feed(key: str) -> None:  # what the region's ingest does, minus replication and jobs
        info = store.head(key)
        assert info is not None
        found.append(key)
        state.record_object_change(key, object_image(info))

    return store, state, found, clock, StoreWatcher(store, state, feed, settle=10.0, clock=clock)


def test_an_object_no_feed_names_is_fed_once(tmp_path: Path) -> None:
    store, state, found, _, watcher = _setup(tmp_path)
    fed = FeedingObjectStore(store, state)
    fed.put("input/known.csv", b"a\n")  # fed as it was written
    store.put("input/gap.csv", b"b\n")  # written, then the process died before the feed record
    assert watcher.pass_once() == ["input/gap.csv"]
    assert found == ["input/gap.csv"]
    assert watcher.pass_once() == [] and found == ["input/gap.csv"]
    keys = [c.key for c in state.feed_since(0, kind="objects")]
    assert keys == ["input/known.csv", "input/gap.csv"]
    # Replaced behind the feed's back: the newer version is fed too.
    store.put("input/gap.csv", b"c\n")
    assert watcher.pass_once() == ["input/gap.csv"]


def test_a_replicated_copy_is_never_fed_back(tmp_path: Path) -> None:
    store, state, found, _, watcher = _setup(tmp_path)
    state.note_stored_object("input/r.csv", "01M8W0AJEG09CE201Q17WXHNAX")  # as the replicator does, first
    store.put("input/r.csv", b"r\n", version_id="01M8W0AJEG09CE201Q17WXHNAX")
    assert watcher.pass_once() == [] and found == []
    # A replicated put that failed after it was noted leaves an older version behind: not fed either.
    state.note_stored_object("input/r.csv", "01M8W0AJEG09CE201Q17WXHNAY")
    assert watcher.pass_once() == [] and found == []


def test_a_young_put_of_regionflow_is_left_to_its_writer_until_it_settles(tmp_path: Path) -> None:
    store, _, found, clock, watcher = _setup(tmp_path)
    info = store.put("work/j/out/000001.csv", b"x\n")
    clock.now = info.last_modified + 1
    assert watcher.pass_once() == [] and found == []
    clock.now = info.last_modified + 11
    assert watcher.pass_once() == ["work/j/out/000001.csv"]
