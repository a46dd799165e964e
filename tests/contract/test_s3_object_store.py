"""What the S3 adapter must do beyond the shared contract: where S3 itself differs (multipart uploads, metadata
rules, its own ETag), how it fails (no endpoint, a frozen one, wrong credentials, no bucket), and that the
objects it writes are plain S3 objects other tools can read. Runs against a real SeaweedFS (seaweedkit)."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import stat
import time
from collections.abc import Iterator

import pytest

from regionflow.errors import ConfigError, ObjectNotFound, StoreUnavailable
from regionflow.servers.seaweedfs import GRPC_OFFSET, SeaweedFS
from regionflow.storage import open_object_store
from regionflow.storage.s3 import PART_SIZE, S3ObjectStore
from regionflow.storage.s3_client import parse_s3_url
from seaweedkit import ACCESS_KEY, SECRET_KEY, client

MiB = 1 << 20


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blocks(data: bytes, size: int = MiB) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_big_streamed_object_goes_up_in_parts(s3_store: S3ObjectStore, seaweedfs: SeaweedFS) -> None:
    data = os.urandom(2 * PART_SIZE + 5 * MiB)
    info = s3_store.put("big/stream.bin", _blocks(data), content_type="application/x-test")
    assert info.etag == sha256(data) and info.size == len(data)
    raw = client(seaweedfs).head_object(Bucket=s3_store.bucket, Key="big/stream.bin")
    assert raw["ETag"].strip('"').endswith("-3")  # three parts, so S3's ETag is no content hash
    assert s3_store.head("big/stream.bin") == info
    digest = hashlib.sha256()
    with s3_store.open("big/stream.bin") as fh:
        while block := fh.read(MiB):
            digest.update(block)
    assert digest.hexdigest() == info.etag


def test_big_seekable_file_is_hashed_then_uploaded(s3_store: S3ObjectStore) -> None:
    data = os.urandom(PART_SIZE + 1)
    info = s3_store.put("big/file.bin", io.BytesIO(data))
    assert info.etag == sha256(data)
    assert s3_store.get("big/file.bin") == data


class _FailsOnSecondPass(io.BytesIO):
    """A seekable file that reads fine once (the hash pass) and breaks halfway through the upload."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.passes = 0

    def seek(self, pos: int, whence: int = 0) -> int:
        if pos == 0 and whence == 0:
            self.passes += 1
        return super().seek(pos, whence)

    def read(self, size: int | None = -1) -> bytes:
        if self.passes >= 1 and self.tell() > PART_SIZE:
            raise OSError("disk went away")
        return super().read(size)


def test_failed_multipart_upload_is_aborted_and_keeps_the_old_object(s3_store: S3ObjectStore,
                                                                   seaweedfs: SeaweedFS) -> None:
    before = s3_store.put("k", b"previous")
    with pytest.raises((OSError, StoreUnavailable)):
        s3_store.put("k", _FailsOnSecondPass(os.urandom(3 * PART_SIZE)))
    assert s3_store.get("k") == b"previous"
    assert s3_store.head("k") == before
    assert client(seaweedfs).list_multipart_uploads(Bucket=s3_store.bucket).get("Uploads", []) == []


def test_open_keeps_a_big_version_across_overwrite_and_delete(s3_store: S3ObjectStore) -> None:
    old = os.urandom(3 * PART_SIZE)
    s3_store.put("k", io.BytesIO(old))
    with s3_store.open("k") as fh:
        first = fh.read(64 * 1024)
        s3_store.put("k", b"new")
        s3_store.delete("k")
        assert first + fh.read() == old
    assert s3_store.head("k") is None


def test_metadata_keys_and_values_round_trip_exactly(s3_store: S3ObjectStore) -> None:
    meta = {"Job": "J-1", "UPPER": "MiXeD", "note": "héllo wörld ✓", "ключ": "значение", "with space": " x ",
            "empty": "", "rf-sha256": "user's own", "multi\nline": "a\r\nb", "emoji 🎉": "🎉"}
    info = s3_store.put("m", b"x", content_type="text/csv; charset=utf-8", metadata=meta)
    head = s3_store.head("m")
    assert head is not None and head.metadata == meta and head.content_type == "text/csv; charset=utf-8"
    assert head == info
    assert s3_store.copy("m", "m2").metadata == meta
    assert next(iter(s3_store.list("m2"))).metadata == meta


def test_objects_are_plain_s3_objects(s3_store: S3ObjectStore, seaweedfs: SeaweedFS) -> None:
    info = s3_store.put("input/orders.csv", b"id,amount\n1,2\n", content_type="text/csv", metadata={"Job": "j"})
    raw = client(seaweedfs).get_object(Bucket=s3_store.bucket, Key="input/orders.csv")
    assert raw["Body"].read() == b"id,amount\n1,2\n"
    assert raw["ContentType"] == "text/csv"
    assert raw["Metadata"]["rf-sha256"] == info.etag and raw["Metadata"]["rf-version"] == info.version_id


def test_object_written_around_regionflow_is_listed(s3_store: S3ObjectStore, seaweedfs: SeaweedFS) -> None:
    client(seaweedfs).put_object(Bucket=s3_store.bucket, Key="foreign", Body=b"abc", ContentType="text/plain")
    head = s3_store.head("foreign")
    assert head is not None and head.size == 3 and head.etag == "" and head.metadata == {}
    assert head.last_modified > 0
    assert [i.key for i in s3_store.list()] == ["foreign"]
    assert s3_store.get("foreign") == b"abc"


def test_copy_follows_a_source_replaced_meanwhile(s3_store: S3ObjectStore) -> None:
    s3_store.put("s", b"one")
    s3_store.put("s", b"two!")
    dst = s3_store.copy("s", "d")
    assert s3_store.get("d") == b"two!" and dst.etag == sha256(b"two!") and dst.size == 4


# ---------------------------------------------------------------------------------------------- failures


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_endpoint_fails_fast_and_clearly() -> None:
    store = S3ObjectStore("bucket", endpoint=f"http://127.0.0.1:{_free_port()}", access_key="a", secret_key="b")
    began = time.monotonic()
    for call in (lambda: store.head("k"), lambda: store.put("k", b"x"), lambda: list(store.list())):
        with pytest.raises(StoreUnavailable, match="127.0.0.1"):
            call()
    assert time.monotonic() - began < 6  # three calls, each refused at once (plus one quick retry)


def test_frozen_endpoint_times_out_within_seconds() -> None:
    # A listening socket nobody reads: what a SIGSTOPped server looks like (the kernel still accepts).
    with socket.socket() as frozen:
        frozen.bind(("127.0.0.1", 0))
        frozen.listen(16)
        port = frozen.getsockname()[1]
        store = S3ObjectStore("bucket", endpoint=f"http://127.0.0.1:{port}", access_key="a", secret_key="b",
                              read_timeout=1.0)
        began = time.monotonic()
        with pytest.raises(StoreUnavailable, match="(?i)timeout|timed out"):
            store.head("k")
        assert time.monotonic() - began < 5


def test_wrong_credentials_are_a_clear_error(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    store = S3ObjectStore(s3_bucket, endpoint=seaweedfs.endpoint, access_key=ACCESS_KEY, secret_key="wrong")
    for call in (lambda: store.put("k", b"x"), lambda: store.get("k"), lambda: store.head("k"),
                 lambda: list(store.list())):
        with pytest.raises(StoreUnavailable, match="access denied"):
            call()
    stranger = S3ObjectStore(s3_bucket, endpoint=seaweedfs.endpoint, access_key="nobody", secret_key="x")
    with pytest.raises(StoreUnavailable, match="access denied"):
        stranger.put("k", b"x")


def test_missing_bucket_is_a_clear_error(seaweedfs: SeaweedFS) -> None:
    store = S3ObjectStore("no-such-bucket", endpoint=seaweedfs.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    with pytest.raises(StoreUnavailable, match="bucket does not exist"):
        store.put("k", b"x")  # not created on the fly: -s3.autoCreateBucket=false
    with pytest.raises(StoreUnavailable, match="bucket does not exist"):
        list(store.list())


def test_missing_object_is_not_found_not_unavailable(s3_store: S3ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        s3_store.get("absent")
    assert s3_store.delete("absent") is False


# ---------------------------------------------------------------------------------------------- url


def test_open_object_store_takes_an_s3_url(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    url = f"s3://{s3_bucket}?endpoint={seaweedfs.endpoint}&region=us-east-1"
    store = open_object_store(url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    assert isinstance(store, S3ObjectStore)
    store.put("k", b"v")
    assert open_object_store(store.url, access_key=ACCESS_KEY, secret_key=SECRET_KEY).get("k") == b"v"


@pytest.mark.parametrize("url", ["s3://", "s3://ab", "s3://Upper", "s3://b_b", "s3://bucket/path",
                                 "s3://bucket?endpoint=ftp://x", "s3://bucket?colour=red",
                                 "s3://bucket?region=a&region=b"])
def test_bad_s3_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        open_object_store(url)


def test_parse_s3_url_defaults() -> None:
    assert parse_s3_url("s3://my-bucket") == ("my-bucket", None, "us-east-1")
    assert parse_s3_url("s3://b.1?endpoint=http://h:1&region=eu-west-1") == ("b.1", "http://h:1", "eu-west-1")


# ---------------------------------------------------------------------------------------------- server


def test_pick_ports_leaves_the_grpc_ports_free() -> None:
    ports = SeaweedFS.pick_ports()
    assert sorted(ports) == ["filer", "master", "s3", "volume"]
    every = [p for port in ports.values() for p in (port, port + GRPC_OFFSET)]
    assert len(set(every)) == 8 and max(every) < 32768  # below the ephemeral range
    for port in every:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_server_files_and_probe(seaweedfs: SeaweedFS, tmp_path) -> None:
    assert stat.S_IMODE(seaweedfs.config_path.stat().st_mode) == 0o600
    assert seaweedfs.probe() is None
    assert seaweedfs.address == f"http://127.0.0.1:{seaweedfs.s3_port}"
    cmd = " ".join(seaweedfs.command())
    for flag in ("mini", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3.port.iceberg=0", "-s3.port.lance=0",
                 "-webdav=false", "-admin.ui=false", "-master.telemetry=false"):
        assert flag in cmd
    ports = SeaweedFS.pick_ports()
    down = SeaweedFS("down", None, tmp_path, master_port=ports["master"], volume_port=ports["volume"],
                     filer_port=ports["filer"], s3_port=ports["s3"], access_key="a", secret_key="b", bucket="bkt")
    began = time.monotonic()
    reason = down.probe(timeout=0.5)
    assert reason and time.monotonic() - began < 3
    down.prepare()
    down.prepare()  # idempotent
    assert stat.S_IMODE(down.config_path.stat().st_mode) == 0o600 and (tmp_path / "data").is_dir()


def test_provision_is_idempotent(seaweedfs: SeaweedFS) -> None:
    seaweedfs.provision()
    seaweedfs.provision()
    assert seaweedfs.bucket in [b["Name"] for b in client(seaweedfs).list_buckets()["Buckets"]]


def test_plain_user_metadata_is_stored_as_an_s3_client_would(s3_store: S3ObjectStore, seaweedfs: SeaweedFS) -> None:
    s3_store.put("k", b"x", metadata={"source": "boto3", "run-id": "42"})
    raw = client(seaweedfs).head_object(Bucket=s3_store.bucket, Key="k")["Metadata"]
    assert raw["source"] == "boto3" and raw["run-id"] == "42" and "rf-meta" not in raw
    head = s3_store.head("k")
    assert head is not None and head.metadata == {"source": "boto3", "run-id": "42"}
    # A key of regionflow's own prefix cannot be told apart from its entries: it goes encoded.
    s3_store.put("k2", b"x", metadata={"rf-sha256": "mine"})
    head2 = s3_store.head("k2")
    assert head2 is not None and head2.metadata == {"rf-sha256": "mine"} and head2.etag == sha256(b"x")


def test_adopt_gives_a_foreign_object_regionflow_metadata_and_keeps_the_rest(s3_store: S3ObjectStore,
                                                                            seaweedfs: SeaweedFS) -> None:
    raw = client(seaweedfs)
    body = os.urandom(3 * MiB)
    raw.put_object(Bucket=s3_store.bucket, Key="input/foreign.csv", Body=body, ContentType="text/csv",
                   CacheControl="no-cache", Metadata={"source": "boto3"})
    before = raw.head_object(Bucket=s3_store.bucket, Key="input/foreign.csv")
    fingerprint = dict(s3_store.scan())["input/foreign.csv"]
    info = s3_store.adopt("input/foreign.csv")
    assert info is not None and info.etag == sha256(body) and info.size == len(body) and info.version_id
    assert info.metadata == {"source": "boto3"} and info.content_type == "text/csv"
    after = raw.head_object(Bucket=s3_store.bucket, Key="input/foreign.csv")
    assert (after["ETag"], after["ContentType"], after.get("CacheControl")) == (before["ETag"], "text/csv", "no-cache")
    # The store stamps the copy onto itself with its own clock (whole seconds, so a copy made in a later
    # second shows a later Last-Modified); regionflow keeps the writer's time in its own entry.
    assert after["LastModified"] >= before["LastModified"]
    assert info.last_modified == before["LastModified"].timestamp()
    assert after["Metadata"]["source"] == "boto3" and after["Metadata"]["rf-sha256"] == sha256(body)
    assert raw.get_object(Bucket=s3_store.bucket, Key="input/foreign.csv")["Body"].read() == body
    assert s3_store.head("input/foreign.csv") == info
    if after["LastModified"] == before["LastModified"]:
        assert dict(s3_store.scan())["input/foreign.csv"] == fingerprint  # adopting wrote no new bytes
    assert s3_store.adopt("input/foreign.csv") == info  # once adopted, it stays as it is
    assert s3_store.adopt("absent") is None
