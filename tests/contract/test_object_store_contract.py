"""The ObjectStore contract, run against every adapter: the directory bucket and S3 (a real SeaweedFS,
tests/seaweedkit.py, a fresh bucket per test).

Tests that look at the directory layout (escapes, temp files) take `file_store` instead. "guarded-file"
runs the contract over the fault-injection wrapper (chaos.guards.GuardedObjectStore) with no fault
active: it must behave exactly like its store.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regionflow.chaos.faults import FaultRegistry
from regionflow.chaos.guards import GuardedObjectStore
from regionflow.errors import InvalidKey, ObjectNotFound
from regionflow.storage import ObjectStore
from regionflow.storage.file import FileObjectStore

MiB = 1 << 20


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(params=["file", "guarded-file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "s3":
        # Only now: the file params must not start a SeaweedFS.
        return request.getfixturevalue("s3_store")
    if request.param == "file":
        return FileObjectStore(tmp_path / "bucket")
    if request.param == "guarded-file":
        # An empty registry: the file is never created, so the layout checks of tmp_path still hold.
        return GuardedObjectStore(FileObjectStore(tmp_path / "bucket"), FaultRegistry(tmp_path / "faults.json"))
    raise AssertionError(f"unknown adapter {request.param}")


@pytest.fixture
def file_store(tmp_path: Path) -> FileObjectStore:
    return FileObjectStore(tmp_path / "bucket")


def test_adapter_satisfies_protocol(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)


# ---------------------------------------------------------------------------------------------- put / get


def test_put_get_bytes(store: ObjectStore) -> None:
    info = store.put("input/a.csv", b"id,amount\n1,2\n")
    assert store.get("input/a.csv") == b"id,amount\n1,2\n"
    assert info.key == "input/a.csv"
    assert info.size == 14
    assert info.etag == sha256(b"id,amount\n1,2\n")
    assert store.head("input/a.csv") == info


def test_put_file_object(store: ObjectStore) -> None:
    data = os.urandom(3 * MiB + 17)  # several read blocks and a partial one
    info = store.put("f", io.BytesIO(data))
    assert store.get("f") == data
    assert info.size == len(data)
    assert info.etag == sha256(data)


def test_put_iterator(store: ObjectStore) -> None:
    parts = [b"a" * 10, b"", bytearray(b"bc"), memoryview(b"def")]
    info = store.put("it", iter(parts))
    assert store.get("it") == b"a" * 10 + b"bcdef"
    assert info.size == 15
    assert info.etag == sha256(b"a" * 10 + b"bcdef")


def test_empty_object(store: ObjectStore) -> None:
    info = store.put("empty", b"")
    assert store.get("empty") == b""
    assert info.size == 0
    assert info.etag == sha256(b"")


def test_version_ids_differ_and_sort_by_time(store: ObjectStore) -> None:
    ids = [store.put("k", f"{i}".encode()).version_id for i in range(5)]
    assert len(set(ids)) == 5
    assert ids == sorted(ids)
    head = store.head("k")
    assert head is not None and head.version_id == ids[-1]


def test_explicit_version_id_is_kept(store: ObjectStore) -> None:
    info = store.put("k", b"x", version_id="01HZZZZZZZZZZZZZZZZZZZZZZZ")
    assert info.version_id == "01HZZZZZZZZZZZZZZZZZZZZZZZ"
    head = store.head("k")
    assert head is not None and head.version_id == "01HZZZZZZZZZZZZZZZZZZZZZZZ"


def test_content_type_and_metadata_roundtrip(store: ObjectStore) -> None:
    store.put("k", b"x", content_type="text/csv", metadata={"job": "job-1", "note": "héllo"})
    head = store.head("k")
    assert head is not None
    assert head.content_type == "text/csv"
    assert head.metadata == {"job": "job-1", "note": "héllo"}
    assert head.last_modified > 0


def test_defaults(store: ObjectStore) -> None:
    store.put("k", b"x")
    head = store.head("k")
    assert head is not None
    assert head.content_type == "application/octet-stream"
    assert head.metadata == {}


def test_overwrite_replaces(store: ObjectStore) -> None:
    first = store.put("k", b"old", metadata={"v": "1"})
    second = store.put("k", b"new!", content_type="text/plain")
    assert store.get("k") == b"new!"
    head = store.head("k")
    assert head == second
    assert head.metadata == {} and head.size == 4 and head.etag == sha256(b"new!")
    assert second.version_id != first.version_id
    assert [i.key for i in store.list()] == ["k"]


# ---------------------------------------------------------------------------------------------- missing


def test_missing_object(store: ObjectStore) -> None:
    assert store.head("nope") is None
    with pytest.raises(ObjectNotFound, match="nope"):
        store.get("nope")
    with pytest.raises(ObjectNotFound, match="nope"):
        store.open("nope")
    with pytest.raises(ObjectNotFound, match="nope"):
        store.copy("nope", "dst")
    assert store.head("dst") is None


def test_missing_below_an_object(store: ObjectStore) -> None:
    store.put("a", b"x")
    assert store.head("a/b") is None
    with pytest.raises(ObjectNotFound):
        store.get("a/b")


# ---------------------------------------------------------------------------------------------- list


def test_list_by_prefix_in_key_order(store: ObjectStore) -> None:
    keys = ["work/j1/chunks/000002.csv", "input/b.csv", "input/a.csv", "work/j1/chunks/000001.csv",
            "inputs.txt", "in", "output/x", "input/sub/c.csv", "input/a.csv.bak", "Z"]
    for k in keys:
        store.put(k, k.encode())
    assert [i.key for i in store.list()] == sorted(keys)
    assert [i.key for i in store.list("inp")] == ["input/a.csv", "input/a.csv.bak", "input/b.csv",
                                                   "input/sub/c.csv", "inputs.txt"]
    assert [i.key for i in store.list("input/")] == ["input/a.csv", "input/a.csv.bak", "input/b.csv",
                                                     "input/sub/c.csv"]
    assert [i.key for i in store.list("input/a")] == ["input/a.csv", "input/a.csv.bak"]
    assert [i.key for i in store.list("input/a.csv")] == ["input/a.csv", "input/a.csv.bak"]
    assert [i.key for i in store.list("work/j1/chunks/")] == ["work/j1/chunks/000001.csv",
                                                              "work/j1/chunks/000002.csv"]
    assert list(store.list("nothing")) == []
    assert list(store.list("../")) == []
    info = next(iter(store.list("output/")))
    assert info == store.head("output/x")
    assert info.etag == sha256(b"output/x") and info.size == len("output/x")


def test_list_orders_keys_not_directories(store: ObjectStore) -> None:
    # Characters below '/' sort a key before the "directory" of the same stem: 'a-b' < 'a.c' < 'a/x'.
    keys = ["a/x", "a-b", "a.c", "a0", "a/y", "A", "é", "z"]
    for k in keys:
        store.put(k, b"x")
    assert [i.key for i in store.list()] == sorted(keys)
    assert [i.key for i in store.list("a")] == sorted(k for k in keys if k.startswith("a"))


def test_list_skips_deleted(store: ObjectStore) -> None:
    for k in ("p/a", "p/b", "p/c"):
        store.put(k, b"x")
    store.delete("p/b")
    assert [i.key for i in store.list("p/")] == ["p/a", "p/c"]


def test_scan_gives_every_key_in_order_with_a_fingerprint_that_changes_on_replace(store: ObjectStore) -> None:
    keys = ["input/b.csv", "input/a.csv", "a-b", "a/x", "output/y"]
    for k in keys:
        store.put(k, k.encode())
    first = list(store.scan())
    assert [k for k, _ in first] == sorted(keys)
    assert [k for k, _ in store.scan("input/")] == ["input/a.csv", "input/b.csv"]
    assert list(store.scan("nothing")) == []
    assert dict(store.scan()) == dict(first)  # stable while nothing changes
    store.put("input/a.csv", b"other bytes")
    store.delete("a-b")
    second = dict(store.scan())
    assert "a-b" not in second
    assert second["input/a.csv"] != dict(first)["input/a.csv"]
    assert {k: v for k, v in second.items() if k != "input/a.csv"} == {
        k: v for k, v in first if k not in ("input/a.csv", "a-b")}


def test_adopt_returns_an_object_regionflow_wrote_as_head_does(store: ObjectStore) -> None:
    info = store.put("input/a.csv", b"a,b\n", content_type="text/csv", metadata={"who": "me"})
    assert store.adopt("input/a.csv") == info == store.head("input/a.csv")
    assert store.get("input/a.csv") == b"a,b\n"
    assert store.adopt("input/absent.csv") is None


# ---------------------------------------------------------------------------------------------- copy / delete


def test_copy_keeps_content_and_metadata(store: ObjectStore) -> None:
    src = store.put("input/a.csv", b"data", content_type="text/csv", metadata={"job": "j"})
    dst = store.copy("input/a.csv", "archive/a.csv")
    assert store.get("archive/a.csv") == b"data"
    assert dst.key == "archive/a.csv"
    assert dst.etag == src.etag and dst.size == src.size
    assert dst.content_type == "text/csv" and dst.metadata == {"job": "j"}
    assert dst.version_id != src.version_id
    assert store.head("archive/a.csv") == dst
    assert store.get("input/a.csv") == b"data"  # the source is untouched


def test_copy_with_new_metadata(store: ObjectStore) -> None:
    store.put("s", b"data", metadata={"a": "1"})
    dst = store.copy("s", "d", metadata={"b": "2"})
    assert dst.metadata == {"b": "2"}
    assert store.head("s").metadata == {"a": "1"}


def test_copy_onto_itself(store: ObjectStore) -> None:
    store.put("s", b"data")
    store.copy("s", "s")
    assert store.get("s") == b"data"


def test_delete(store: ObjectStore) -> None:
    store.put("a/b/c", b"x")
    assert store.delete("a/b/c") is True
    assert store.delete("a/b/c") is False
    assert store.head("a/b/c") is None
    with pytest.raises(ObjectNotFound):
        store.get("a/b/c")
    assert list(store.list()) == []
    assert store.delete("never") is False


def test_delete_frees_the_name_for_other_shapes(store: ObjectStore) -> None:
    store.put("a/b", b"x")
    store.delete("a/b")
    store.put("a", b"y")  # a directory bucket must not keep an empty 'a/' in the way
    assert store.get("a") == b"y"


# ---------------------------------------------------------------------------------------------- streaming


def test_large_object_streams_in_blocks(store: ObjectStore) -> None:
    data = os.urandom(5 * MiB + 123)
    info = store.put("big", (data[i:i + MiB] for i in range(0, len(data), MiB)))
    assert info.size == len(data) and info.etag == sha256(data)
    digest, got = hashlib.sha256(), bytearray()
    with store.open("big") as fh:
        while block := fh.read(64 * 1024):
            assert len(block) <= 64 * 1024
            digest.update(block)
            got += block
    assert bytes(got) == data
    assert digest.hexdigest() == info.etag


def test_open_keeps_its_version_across_an_overwrite(store: ObjectStore) -> None:
    store.put("k", b"old" * 1000)
    with store.open("k") as fh:
        store.put("k", b"new")
        assert fh.read() == b"old" * 1000
    assert store.get("k") == b"new"


def test_a_copy_is_independent_of_its_source(store: ObjectStore) -> None:
    store.put("src", b"first" * 1000)
    copied = store.copy("src", "dst")
    store.put("src", b"second")
    assert store.delete("src")
    assert store.get("dst") == b"first" * 1000 and store.head("dst") == copied
    with store.open("dst") as fh:
        store.put("dst", b"third")
        assert fh.read() == b"first" * 1000
    assert store.get("dst") == b"third"


def test_read_range_gives_those_bytes_and_the_version_they_came_from(store: ObjectStore) -> None:
    data = bytes(range(256)) * 40
    first = store.put("r", data, metadata={"job": "j1"})
    for start, length in [(0, 10), (100, 1), (5000, 5240), (10000, 500), (10240, 7), (99999, 3), (3, 0)]:
        info, got = store.read_range("r", start, length)
        assert got == data[start:start + length], (start, length)
        assert (info.version_id, info.etag, info.size, info.metadata) == (first.version_id, first.etag, len(data),
                                                                           {"job": "j1"})
    second = store.put("r", b"new")
    info, got = store.read_range("r", 1, 10)
    assert (info.version_id, got) == (second.version_id, b"ew")
    with pytest.raises(ObjectNotFound):
        store.read_range("absent", 0, 10)
    with pytest.raises(ValueError):
        store.read_range("r", -1, 10)


def test_compose_stores_the_head_then_the_parts_in_order(store: ObjectStore) -> None:
    big = os.urandom(9 * MiB + 5)  # over one S3 part, and many copy blocks
    store.put("p/0", b"a,1\n")
    store.put("p/1", b"")
    store.put("p/2", big)
    store.put("p/3", b"b,2\n")
    old = store.put("out", b"previous")
    info = store.compose("out", ["p/0", "p/1", "p/2", "p/3", "p/0"], head=b"k,v\n", content_type="text/csv",
                         metadata={"rows": "3"})
    expected = b"k,v\n" + b"a,1\n" + big + b"b,2\n" + b"a,1\n"
    assert store.get("out") == expected
    assert (info.etag, info.size, info.content_type, info.metadata) == (sha256(expected), len(expected), "text/csv",
                                                                         {"rows": "3"})
    assert store.head("out") == info and info.version_id != old.version_id
    assert store.get("p/2") == big  # the parts are left as they were
    assert store.compose("head-only", [], head=b"h\n").etag == sha256(b"h\n")
    assert store.get("head-only") == b"h\n"
    assert store.compose("empty", []).size == 0 and store.get("empty") == b""


def test_compose_takes_parts_as_they_come_and_refuses_a_missing_one(store: ObjectStore) -> None:
    store.put("p/0", b"x")
    before = store.put("out", b"previous")
    taken: list[str] = []

    def parts() -> Iterator[str]:
        for key in ["p/0", "p/absent", "p/0"]:
            taken.append(key)
            yield key

    with pytest.raises(ObjectNotFound):
        store.compose("out", parts(), head=b"h")
    assert taken == ["p/0", "p/absent"]  # read one by one: a caller's generator runs between parts
    assert store.get("out") == b"previous" and store.head("out") == before
    with pytest.raises(ObjectNotFound):
        store.compose("fresh", ["p/absent"])
    assert store.head("fresh") is None


# ---------------------------------------------------------------------------------------------- keys

BAD_KEYS = ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a\\b", "C:/x", "a\x00b", "x/",
            "..", ".", "a/..", "a\nb"]


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.mark.parametrize("key", BAD_KEYS)
def test_invalid_keys_are_refused(store: ObjectStore, tmp_path: Path, key: str) -> None:
    before = set(os.listdir(tmp_path.parent)), _tree(tmp_path)
    with pytest.raises(InvalidKey):
        store.put(key, b"x")
    with pytest.raises(InvalidKey):
        store.get(key)
    with pytest.raises(InvalidKey):
        store.open(key)
    with pytest.raises(InvalidKey):
        store.head(key)
    with pytest.raises(InvalidKey):
        store.delete(key)
    with pytest.raises(InvalidKey):
        store.copy(key, "ok")
    store.put("ok", b"fine")
    with pytest.raises(InvalidKey):
        store.copy("ok", key)
    with pytest.raises(InvalidKey):
        store.compose(key, ["ok"])
    with pytest.raises(InvalidKey):
        store.compose("ok2", ["ok", key])
    store.delete("ok")
    assert list(store.list()) == []
    after = set(os.listdir(tmp_path.parent)), _tree(tmp_path)
    assert after == before


@pytest.fixture
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("outside")


def test_symlinked_directory_cannot_escape(file_store: FileObjectStore, outside: Path) -> None:
    (outside / "x").write_bytes(b"secret")
    (file_store.root / "objects" / "evil").symlink_to(outside, target_is_directory=True)
    (file_store.root / "meta" / "evil").symlink_to(outside, target_is_directory=True)
    (outside / "x.json").write_text('{"etag": "", "version_id": "", "size": 6, "content_type": "", '
                                    '"metadata": {}, "last_modified": 0}')
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    with pytest.raises(InvalidKey):
        file_store.put("evil/x", b"overwrite")
    with pytest.raises(InvalidKey):
        file_store.put("evil/new", b"create")
    with pytest.raises((InvalidKey, ObjectNotFound)):
        file_store.get("evil/x")
    with pytest.raises((InvalidKey, ObjectNotFound)):
        file_store.open("evil/x")
    with pytest.raises(InvalidKey):
        file_store.head("evil/x")
    with pytest.raises(InvalidKey):
        file_store.delete("evil/x")
    with pytest.raises(InvalidKey):
        file_store.copy("evil/x", "stolen")
    assert file_store.head("stolen") is None
    assert [i.key for i in file_store.list()] == [] and list(file_store.scan()) == []
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before
    assert not list((file_store.root / "tmp").iterdir())


def test_symlinked_directories_leave_outside_untouched(file_store: FileObjectStore, outside: Path) -> None:
    # Nothing outside exists yet: a write that followed the links would show up as a new file there.
    (file_store.root / "objects" / "evil").symlink_to(outside, target_is_directory=True)
    (file_store.root / "meta" / "evil").symlink_to(outside, target_is_directory=True)
    for key in ("evil/x", "evil/sub/x"):
        with pytest.raises(InvalidKey):
            file_store.put(key, b"escape")
        with pytest.raises((InvalidKey, ObjectNotFound)):
            file_store.get(key)
        with pytest.raises(InvalidKey):
            file_store.head(key)
    assert list(outside.iterdir()) == []
    assert list((file_store.root / "tmp").iterdir()) == []


def test_symlinked_data_dir_only(file_store: FileObjectStore, outside: Path) -> None:
    # Only the data side is redirected: the sidecar path is fine, the data path is not.
    (file_store.root / "objects" / "evil").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidKey):
        file_store.put("evil/x", b"x")
    with pytest.raises((InvalidKey, ObjectNotFound)):
        file_store.get("evil/x")
    assert list(outside.iterdir()) == []
    assert not (file_store.root / "meta" / "evil").exists()


def test_symlinked_object_file_cannot_escape(file_store: FileObjectStore, outside: Path) -> None:
    (outside / "target").write_bytes(b"secret")
    (file_store.root / "objects" / "link").symlink_to(outside / "target")
    with pytest.raises(InvalidKey):
        file_store.put("link", b"overwrite")
    with pytest.raises((InvalidKey, ObjectNotFound)):
        file_store.get("link")
    (file_store.root / "meta" / "link.json").symlink_to(outside / "target")
    file_store.put("real", b"ok")
    assert [key for key, _ in file_store.scan()] == ["real"]  # a symlinked sidecar is no object
    assert (outside / "target").read_bytes() == b"secret"


def test_key_and_keys_below_it_conflict_cleanly(file_store: FileObjectStore) -> None:
    # A directory bucket cannot hold both 'a' and 'a/b'; the refusal must not damage either.
    file_store.put("a", b"file")
    with pytest.raises(InvalidKey):
        file_store.put("a/b", b"below")
    file_store.put("d/e", b"below")
    with pytest.raises(InvalidKey):
        file_store.put("d", b"file")
    assert file_store.get("a") == b"file"
    assert file_store.get("d/e") == b"below"
    assert [i.key for i in file_store.list()] == ["a", "d/e"]
    assert not list((file_store.root / "tmp").iterdir())


def test_refused_put_leaves_no_directories_behind(file_store: FileObjectStore) -> None:
    # 'x.json/y' clashes with the sidecar of 'x' (meta/x.json) but not with its data: the refusal must
    # not leave an empty objects/x.json/ that would later block a put of the key 'x.json'.
    file_store.put("x", b"1")
    with pytest.raises(InvalidKey):
        file_store.put("x.json/y", b"2")
    assert not (file_store.root / "objects" / "x.json").exists()
    file_store.delete("x")
    file_store.put("x.json", b"3")
    assert file_store.get("x.json") == b"3"
    assert [i.key for i in file_store.list()] == ["x.json"]


def test_overlong_segment_is_refused(file_store: FileObjectStore) -> None:
    with pytest.raises(InvalidKey):
        file_store.put("a/" + "x" * 251, b"x")


# ---------------------------------------------------------------------------------------------- atomicity


class Boom(Exception):
    pass


def _failing_stream() -> Iterator[bytes]:
    yield b"new" * 1000
    yield b"more" * 1000
    raise Boom("network dropped")


def test_failed_put_keeps_previous_object(store: ObjectStore) -> None:
    before = store.put("k", b"previous", metadata={"v": "1"})
    with pytest.raises(Boom):
        store.put("k", _failing_stream(), metadata={"v": "2"})
    assert store.get("k") == b"previous"
    assert store.head("k") == before
    with pytest.raises(Boom):
        store.put("fresh", _failing_stream())
    assert store.head("fresh") is None
    assert [i.key for i in store.list()] == ["k"]


def test_failed_put_leaves_no_temp_files(file_store: FileObjectStore) -> None:
    file_store.put("k", b"previous")
    with pytest.raises(Boom):
        file_store.put("k", _failing_stream())
    with pytest.raises(TypeError):
        file_store.put("k", "a str is not bytes")  # type: ignore[arg-type]
    with pytest.raises(ObjectNotFound):
        file_store.compose("k", ["k", "absent"], head=b"h")
    assert file_store.get("k") == b"previous"
    assert list((file_store.root / "tmp").iterdir()) == []


def test_orphan_data_without_sidecar_is_absent(file_store: FileObjectStore) -> None:
    # What a crash between the data rename and the sidecar rename leaves behind.
    (file_store.root / "objects" / "orphan").write_bytes(b"half-committed")
    assert file_store.head("orphan") is None
    with pytest.raises(ObjectNotFound):
        file_store.get("orphan")
    assert list(file_store.list()) == []
    file_store.put("orphan", b"real")
    assert file_store.get("orphan") == b"real"


# ---------------------------------------------------------------------------------------------- concurrency


def _put_many(root: str, worker: int, n: int) -> list[str]:
    store = FileObjectStore(root)
    return [store.put(f"shared/w{worker}/k{i:03d}", f"{worker}:{i}".encode() * 100).etag for i in range(n)]


def test_two_processes_put_concurrently(file_store: FileObjectStore) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_put_many, [(str(file_store.root), w, 50) for w in range(2)])
    assert [len(r) for r in results] == [50, 50]
    listed = list(file_store.list("shared/"))
    assert len(listed) == 100
    for info in listed:
        w, i = info.key.split("/")[1][1:], int(info.key.split("/")[2][1:])
        assert file_store.get(info.key) == f"{w}:{i}".encode() * 100
        assert info.etag == sha256(f"{w}:{i}".encode() * 100)
    assert list((file_store.root / "tmp").iterdir()) == []


def _put_same_key(root: str, worker: int, n: int) -> None:
    store = FileObjectStore(root)
    for i in range(n):
        store.put("contended", os.urandom(1000 + worker * 100 + i), metadata={"w": str(worker)})


def test_same_key_from_two_processes_stays_consistent(file_store: FileObjectStore) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        pool.starmap(_put_same_key, [(str(file_store.root), w, 30) for w in range(2)])
    head = file_store.head("contended")
    data = file_store.get("contended")
    assert head is not None
    assert head.etag == sha256(data) and head.size == len(data)


# ---------------------------------------------------------------------------------------------- properties


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=10_000), chunk=st.integers(min_value=1, max_value=4096))
def test_random_bytes_roundtrip(store: ObjectStore, data: bytes, chunk: int) -> None:
    as_blocks = (data[i:i + chunk] for i in range(0, len(data), chunk))
    info = store.put("prop/blob", as_blocks)
    assert info.etag == sha256(data)
    assert info.size == len(data)
    assert store.get("prop/blob") == data
    assert store.head("prop/blob") == info
