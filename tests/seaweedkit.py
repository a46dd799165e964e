"""Test helper: a real SeaweedFS (`weed mini`) for the S3 adapter, started with the same ManagedServer class
and runner that `regionflow up` uses.

Registered as a pytest plugin by tests/conftest.py. `seaweedfs` is session-scoped (one server on free
loopback ports, stopped at the end of the session even when tests fail); `s3_bucket` gives each test a
fresh bucket, emptied and deleted afterwards (SeaweedFS gives every bucket its own volume, and a server
has only so many), so `list()` sees only that test's keys.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from regionflow.servers.runner import start_server, stop_server, wait_servers_healthy
from regionflow.servers.seaweedfs import SeaweedFS
from regionflow.storage.s3 import S3ObjectStore
from regionflow.storage.s3_client import make_client

ACCESS_KEY = "rf-test-access"
SECRET_KEY = "rf-test-secret-" + uuid.uuid4().hex


@contextmanager
def running_seaweedfs(base: Path, *, name: str = "test-seaweedfs") -> Iterator[SeaweedFS]:
    """A started, healthy, provisioned SeaweedFS under base; stopped (and its pid file removed) on exit.
    The attribute started_in says how long the start took, in seconds."""
    ports = SeaweedFS.pick_ports()
    server = SeaweedFS(name, None, base / "data", master_port=ports["master"], volume_port=ports["volume"],
                       filer_port=ports["filer"], s3_port=ports["s3"], access_key=ACCESS_KEY,
                       secret_key=SECRET_KEY, bucket="rf-default")
    run_dir, log_dir = base / "run", base / "logs"
    began = time.monotonic()
    try:
        wait_servers_healthy([start_server(server, run_dir, log_dir)], timeout=30)
        server.started_in = time.monotonic() - began  # type: ignore[attr-defined]
        yield server
    finally:
        stop_server(run_dir, server.name, timeout=15, stop_signal=server.stop_signal)


def client(server: SeaweedFS):
    """A plain boto3 client on the server (what an operator's tools would use)."""
    return make_client(server.endpoint, ACCESS_KEY, SECRET_KEY, read_timeout=30.0)


def empty_and_delete(server: SeaweedFS, bucket: str) -> None:
    """Delete every object (and unfinished multipart upload) in bucket, then the bucket."""
    s3 = client(server)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    s3.delete_bucket(Bucket=bucket)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One SeaweedFS for the whole session (about a second to start)."""
    with running_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def s3_bucket(seaweedfs: SeaweedFS) -> Iterator[str]:
    """A fresh, empty bucket on the session's SeaweedFS, deleted after the test."""
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    client(seaweedfs).create_bucket(Bucket=bucket)
    try:
        yield bucket
    finally:
        empty_and_delete(seaweedfs, bucket)


@pytest.fixture
def s3_store(seaweedfs: SeaweedFS, s3_bucket: str) -> S3ObjectStore:
    """An S3ObjectStore on a fresh bucket."""
    return S3ObjectStore(s3_bucket, endpoint=seaweedfs.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
