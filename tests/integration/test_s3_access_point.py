"""S3 clients at the access point (servers topology: real SeaweedFS per region, the real AWS CLI and boto3).

The access point passes S3 requests through to a region's store, which checks the signature; objects that
arrive through it, or straight into either region's store, become jobs and replicate.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config as BotoConfig
from test_servers import servers_root  # noqa: F401  (the fixture: a root the postgres user can enter)

from batchkit import independent_join
from regionflow.workloads.batch.sample import generate
from stackkit import EAST, WEST, Stack, running_stack
from testenv import REGIONFLOW

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

AWS = str(Path(REGIONFLOW).parent / "aws")
BUCKET = "batch"


def _aws(stack: Stack, *args: str, secret: str | None = None, endpoint: str | None = None,
         timeout: float = 180) -> subprocess.CompletedProcess:
    """The AWS CLI against the access point (or endpoint), with the keys `regionflow credentials` prints."""
    access = stack.rf_json("credentials")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": access["aws_access_key_id"],
           "AWS_SECRET_ACCESS_KEY": secret or access["aws_secret_access_key"], "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    quiet = ("--no-progress",) if args[:2] == ("s3", "cp") else ()
    return subprocess.run([AWS, "--endpoint-url", endpoint or access["endpoint_url"], *args, *quiet],
                          capture_output=True, text=True, timeout=timeout, env=env)


def _boto(stack: Stack, endpoint: str, secret: str | None = None):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=stack.secrets.s3_access_key,
                        aws_secret_access_key=secret or stack.secrets.s3_secret_key, region_name="us-east-1",
                        config=BotoConfig(s3={"addressing_style": "path"}, signature_version="s3v4",
                                          connect_timeout=5, read_timeout=60, retries={"max_attempts": 2}))


def _store(stack: Stack, region: str):
    return _boto(stack, stack.config.region(region).s3_endpoint)


def _keys(stack: Stack, region: str, prefix: str = "") -> list[str]:
    pages = _store(stack, region).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _emls(stack: Stack) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in (stack.root / ".regionflow" / "outbox").glob("*.eml"):
        counts[p.stem] = counts.get(p.stem, 0) + 1
    return counts


def _jobs_of(stack: Stack, key: str) -> list[dict]:
    return [j for j in stack.rf_json("jobs", "--region", EAST) if j["input_key"] == key]


def _processed_once(stack: Stack, key: str, rows: int, timeout: float = 120) -> dict:
    """The one job of input key, once COMPLETED: exactly one job, one message, every row accounted for."""
    def done() -> bool:
        jobs = _jobs_of(stack, key)
        return len(jobs) == 1 and jobs[0]["status"] == "COMPLETED"

    stack.eventually(done, timeout=timeout, interval=0.5, what=f"the job of {key} to complete")
    (job,) = _jobs_of(stack, key)
    assert job["rows_in"] == job["rows_ok"] + job["rows_rejected"] == rows, job
    stack.eventually(lambda: _emls(stack).get(job["job_id"]) == 1, timeout=30, what="its one notification")
    return job


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("s3data")
    generate(500, d, invalid_ratio=0.1, seed=12)
    return d


def test_s3_clients_through_the_access_point_and_straight_into_each_store(servers_root, reference_data, data,  # noqa: F811
                                                                          tmp_path):
    with running_stack(servers_root, init_args=("--servers",), settings={"sync_timeout": "20"}) as stack:
        fin = Path(reference_data) / "financial_data.csv"
        stack.rf("reference", "load", str(fin))
        _aws_cp_up_processed_once_and_output_down_matches_the_join(stack, reference_data, tmp_path)
        _presigned_get_from_boto3_works_with_plain_httpx_and_an_altered_one_is_refused(stack)
        _multipart_upload_arrives_intact_and_replicated(stack, tmp_path)
        _wrong_secret_is_refused_by_the_store_and_writes_nothing(stack, data)
        _objects_put_straight_into_either_store_become_one_job_and_replicate(stack, data)
        _upload_while_the_active_region_is_killed_lands_in_the_other(stack, data)


def _aws_cp_up_processed_once_and_output_down_matches_the_join(stack: Stack, reference_data, tmp_path) -> None:
    src = Path(reference_data) / "testfile.csv"
    up = _aws(stack, "s3", "cp", str(src), f"s3://{BUCKET}/input/testfile.csv")
    assert up.returncode == 0, up.stderr
    job = _processed_once(stack, "input/testfile.csv", rows=10000)
    assert job["owner_region"] == EAST

    listed = _aws(stack, "s3", "ls", f"s3://{BUCKET}/output/completed/")
    assert listed.returncode == 0 and "testfile.csv" in listed.stdout, listed.stdout + listed.stderr
    out = tmp_path / "out.csv"
    down = _aws(stack, "s3", "cp", f"s3://{BUCKET}/{job['output_key']}", str(out))
    assert down.returncode == 0, down.stderr
    expected = independent_join(src.read_text(encoding="utf-8"),
                                (Path(reference_data) / "financial_data.csv").read_text(encoding="utf-8"))
    assert list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))[1:] == expected

    # boto3's put_object answer names the job, whose id is derived from (key, version).
    sent = src.read_bytes()[:20000].rsplit(b"\n", 1)[0]
    answer = _boto(stack, stack.rf_json("credentials")["endpoint_url"]).put_object(
        Bucket=BUCKET, Key="input/boto.csv", Body=sent + b"\n")
    headers = answer["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-regionflow-region"] == EAST
    job = _processed_once(stack, "input/boto.csv", rows=sent.count(b"\n"))
    assert headers["x-regionflow-job-id"] == job["job_id"]


def _presigned_get_from_boto3_works_with_plain_httpx_and_an_altered_one_is_refused(stack: Stack) -> None:
    ap = _boto(stack, stack.rf_json("credentials")["endpoint_url"])
    ap.put_object(Bucket=BUCKET, Key="shared/note.txt", Body=b"hello from boto3\n")
    url = ap.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "shared/note.txt"}, ExpiresIn=120)
    got = httpx.get(url, timeout=30)
    assert got.status_code == 200 and got.content == b"hello from boto3\n"
    altered = httpx.get(url.replace("shared/note.txt", "shared/other.txt"), timeout=30)
    assert altered.status_code == 403 and b"SignatureDoesNotMatch" in altered.content
    expired = ap.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "shared/note.txt"}, ExpiresIn=1)
    time.sleep(2)  # the link's own lifetime, not a wait for the system
    assert httpx.get(expired, timeout=30).status_code == 403


def _multipart_upload_arrives_intact_and_replicated(stack: Stack, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(40 << 20))
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    up = _aws(stack, "s3", "cp", str(big), f"s3://{BUCKET}/blobs/big.bin")
    assert up.returncode == 0, up.stderr
    head = _aws(stack, "s3api", "head-object", "--bucket", BUCKET, "--key", "blobs/big.bin")
    assert head.returncode == 0, head.stderr
    # Sync upload mode: the answer came once the other region had it.
    west = _store(stack, WEST).head_object(Bucket=BUCKET, Key="blobs/big.bin")
    assert west["Metadata"]["rf-sha256"] == digest
    ap_head = json.loads(head.stdout)
    assert ap_head["ContentLength"] == 40 << 20 and ap_head["ETag"].strip('"').endswith("-5")  # 5 parts of 8 MiB
    assert ap_head["Metadata"]["rf-sha256"] == digest
    stack.replicated_both_ways(timeout=120)
    for region in (EAST, WEST):
        info = _store(stack, region).head_object(Bucket=BUCKET, Key="blobs/big.bin")
        assert info["ContentLength"] == 40 << 20 and info["Metadata"]["rf-sha256"] == digest, region
        body = _store(stack, region).get_object(Bucket=BUCKET, Key="blobs/big.bin")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == digest, region
    assert _store(stack, EAST).head_object(Bucket=BUCKET, Key="blobs/big.bin")["ETag"] == ap_head["ETag"]
    # boto3's upload_file goes multipart above 8 MiB too; its download_file reads it back.
    medium = tmp_path / "medium.bin"
    medium.write_bytes(os.urandom(20 << 20))
    ap = _boto(stack, stack.rf_json("credentials")["endpoint_url"])
    ap.upload_file(str(medium), BUCKET, "blobs/medium.bin")
    assert _store(stack, WEST).head_object(Bucket=BUCKET, Key="blobs/medium.bin")["ContentLength"] == 20 << 20
    ap.download_file(BUCKET, "blobs/medium.bin", str(tmp_path / "medium.back"))
    assert (tmp_path / "medium.back").read_bytes() == medium.read_bytes()
    back = tmp_path / "back.bin"
    assert _aws(stack, "s3", "cp", f"s3://{BUCKET}/blobs/big.bin", str(back)).returncode == 0
    assert hashlib.sha256(back.read_bytes()).hexdigest() == digest


def _wrong_secret_is_refused_by_the_store_and_writes_nothing(stack: Stack, data: Path) -> None:
    bad = _aws(stack, "s3", "cp", str(data / "orders.csv"), f"s3://{BUCKET}/input/forged.csv", secret="not-the-secret")
    assert bad.returncode != 0 and "SignatureDoesNotMatch" in bad.stderr, bad.stderr
    ap = _boto(stack, stack.rf_json("credentials")["endpoint_url"], secret="not-the-secret")
    with pytest.raises(Exception) as refused:
        ap.put_object(Bucket=BUCKET, Key="input/forged2.csv", Body=b"uuid\n")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403  # type: ignore[attr-defined]
    stack.replicated_both_ways(timeout=60)
    for region in (EAST, WEST):
        assert not [k for k in _keys(stack, region) if "forged" in k], region
    assert not [j for j in stack.rf_json("jobs", "--region", EAST) if "forged" in j["input_key"]]


def _objects_put_straight_into_either_store_become_one_job_and_replicate(stack: Stack, data: Path) -> None:
    body = (data / "orders.csv").read_bytes()
    rows = body.count(b"\n") - 1
    _store(stack, EAST).put_object(Bucket=BUCKET, Key="input/straight-east.csv", Body=body,
                                   Metadata={"source": "boto3"})
    job = _processed_once(stack, "input/straight-east.csv", rows=rows)
    assert job["owner_region"] == EAST
    # Into the standby's store: replicated to the active region and processed there, once.
    _store(stack, WEST).put_object(Bucket=BUCKET, Key="input/straight-west.csv", Body=body)
    job = _processed_once(stack, "input/straight-west.csv", rows=rows)
    assert job["owner_region"] == EAST and job["completing_region"] == EAST
    stack.replicated_both_ways(timeout=60)
    for region in (EAST, WEST):
        keys = _keys(stack, region)
        for name in ("straight-east.csv", "straight-west.csv"):
            assert f"output/completed/{name}" in keys, (region, name)
    # The writer's own metadata survives regionflow taking the object in.
    archived = [k for k in _keys(stack, WEST, "archive/") if k.endswith("straight-east.csv")]
    assert len(archived) == 1
    meta = _store(stack, WEST).head_object(Bucket=BUCKET, Key=archived[0])["Metadata"]
    assert meta["source"] == "boto3" and meta["rf-sha256"] == hashlib.sha256(body).hexdigest()


def _upload_while_the_active_region_is_killed_lands_in_the_other(stack: Stack, data: Path) -> None:
    for name in (EAST, f"{EAST}-seaweedfs"):
        os.kill(stack.pid(name), signal.SIGKILL)
    up = _aws(stack, "s3", "cp", str(data / "orders.csv"), f"s3://{BUCKET}/input/during-outage.csv", "--debug")
    assert up.returncode == 0, up.stderr[-2000:]
    assert "'x-regionflow-region': 'us-west-2'" in up.stderr
    assert "input/during-outage.csv" in _keys(stack, WEST, "input/")
    listed = _aws(stack, "s3", "ls", f"s3://{BUCKET}/input/")
    assert listed.returncode == 0 and "during-outage.csv" in listed.stdout, listed.stderr


def test_a_region_killed_between_taking_an_object_in_and_feeding_it_feeds_it_after_restart(
        servers_root, reference_data, data, monkeypatch):  # noqa: F811
    """The crash gap: an object in the store that no feed names. The region dies (crash point, like SIGKILL)
    right after it adopted an object put straight into its store and before the feed record; restarted by
    `up`, its watcher feeds it, and it is processed once and replicated."""
    monkeypatch.setenv("REGIONFLOW_CRASH_AT", "ingest:before_feed")
    monkeypatch.setenv("REGIONFLOW_CRASH_MARKERS", str(servers_root.parent / "markers"))
    with running_stack(servers_root, init_args=("--servers",)) as stack:
        stack.rf("reference", "load", str(Path(reference_data) / "financial_data.csv"))
        body = (data / "orders.csv").read_bytes()
        _store(stack, EAST).put_object(Bucket=BUCKET, Key="input/gap.csv", Body=body)
        east = stack.pid(EAST)

        def dead() -> bool:
            try:
                os.kill(east, 0)
            except ProcessLookupError:
                return True
            return False

        stack.eventually(dead, timeout=60, what="us-east-1 to die at the crash point")
        assert (servers_root.parent / "markers" / "ingest_before_feed").is_file()
        # Adopted (regionflow's metadata on it) but fed nowhere: the other region does not have it.
        assert "rf-version" in _store(stack, EAST).head_object(Bucket=BUCKET, Key="input/gap.csv")["Metadata"]
        assert "input/gap.csv" not in _keys(stack, WEST, "input/")
        stack.rf("up", "--detach", timeout=120)  # restarts what is missing: the region
        job = _processed_once(stack, "input/gap.csv", rows=body.count(b"\n") - 1, timeout=180)
        assert job["owner_region"] == EAST
        stack.replicated_both_ways(timeout=60)
        assert "output/completed/gap.csv" in _keys(stack, WEST, "output/")
        assert _emls(stack) == {job["job_id"]: 1}
