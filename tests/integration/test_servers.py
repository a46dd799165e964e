"""The servers topology (`init --servers`): each region on its own SeaweedFS (S3) and PostgreSQL, the routing
control on a 3-member etcd cluster, all started by `regionflow up` on loopback ports. The same product runs on
them: the reference file through the access point, replication between the regions' own stores, a regional
outage (the region process and its SeaweedFS SIGKILLed with 20 files in flight), failover and failback."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig

from batchkit import independent_join
from regionflow.workloads.batch.sample import generate
from stackkit import EAST, WEST, Stack, running_stack

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

SERVERS = ("etcd-1", "etcd-2", "etcd-3", f"{EAST}-postgres", f"{EAST}-seaweedfs", f"{WEST}-postgres",
           f"{WEST}-seaweedfs", f"{EAST}-ledger-db", f"{WEST}-ledger-db")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("serverdata")
    generate(2000, d, invalid_ratio=0.05, seed=3)
    return d


@pytest.fixture
def servers_root(request):
    # The PostgreSQL clusters run as the postgres OS user, who cannot pass through pytest's 0700 temp tree.
    base = Path(tempfile.mkdtemp(prefix="regionflow-servers-"))
    base.chmod(0o711)
    failed_before = request.session.testsfailed
    yield base / "stack"
    if request.session.testsfailed == failed_before:
        shutil.rmtree(base, ignore_errors=True)
    else:  # the stack's logs and data are what explains a failure: keep them
        print(f"\nkept {base} for inspection")


def _s3(stack: Stack, region: str):
    rc = stack.config.region(region)
    return boto3.client("s3", endpoint_url=rc.s3_endpoint, aws_access_key_id=stack.secrets.s3_access_key,
                        aws_secret_access_key=stack.secrets.s3_secret_key, region_name="us-east-1",
                        config=BotoConfig(s3={"addressing_style": "path"}, signature_version="s3v4",
                                          connect_timeout=5, read_timeout=30, retries={"max_attempts": 2}))


def _bucket(stack: Stack, region: str) -> str:
    return stack.config.region(region).objects[len("s3://"):]


def _etcdctl_get(stack: Stack, key: str) -> dict:
    endpoints = ",".join(f"http://127.0.0.1:{m.client_port}" for m in stack.config.etcd)
    result = subprocess.run(["etcdctl", f"--endpoints={endpoints}", "get", key, "--print-value-only"],
                            capture_output=True, text=True, timeout=30, env={**os.environ, "ETCDCTL_API": "3"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _emls(stack: Stack, jobs: list[str]) -> dict[str, int]:
    """How many messages the shared outbox holds for each of jobs."""
    counts = dict.fromkeys(jobs, 0)
    for p in (stack.root / ".regionflow" / "outbox").glob("*.eml"):
        if p.stem in counts:
            counts[p.stem] += 1
    return counts


def test_servers_topology_reference_file_outage_failover_failback_and_quorum_loss(servers_root, reference_data, data):
    with running_stack(servers_root, init_args=("--servers",), settings={"sync_timeout": "20"}) as stack:
        _reference_file_readable_from_both_s3_endpoints(stack, reference_data)
        _kill_region_and_its_seaweedfs_with_files_in_flight_then_failover_and_failback(stack, data)
        _quorum_lost_fails_closed_and_failover_changes_nothing(stack, reference_data)


def _reference_file_readable_from_both_s3_endpoints(stack: Stack, reference_data) -> None:
    status = stack.rf_json("status")
    servers = {s["name"]: s for s in status["servers"]}
    assert sorted(servers) == sorted(SERVERS)
    assert all(s["running"] and s["healthy"] for s in servers.values()), servers
    run = stack.root / ".regionflow" / "run"
    logs = stack.root / ".regionflow" / "logs"
    for name in SERVERS:  # named so an operator can tell which region each belongs to
        assert (run / f"{name}.pid").is_file() and (logs / f"{name}.log").is_file()
    assert "us-east-1-seaweedfs" in stack.rf("status").stdout

    fin = Path(reference_data) / "financial_data.csv"
    src = Path(reference_data) / "testfile.csv"
    stack.rf("reference", "load", str(fin))
    with stack.http(timeout=60) as ap:
        answer = ap.put("/objects/input/testfile.csv", content=src.read_bytes())
    assert answer.status_code == 200, answer.text
    job_id = answer.json()["job_id"]
    done = stack.rf_json("wait", job_id, "--timeout", "120", timeout=180)[0]
    assert done["status"] == "COMPLETED", done
    assert done["rows_in"] == done["rows_ok"] + done["rows_rejected"] == 10000

    expected = independent_join(src.read_text(encoding="utf-8"), fin.read_text(encoding="utf-8"))
    with stack.http() as ap:
        output = ap.get(f"/objects/{done['output_key']}").content
    assert list(csv.reader(io.StringIO(output.decode())))[1:] == expected

    # Plain boto3 reads the output straight from both regions' own S3 servers, once replicated.
    east = _s3(stack, EAST).get_object(Bucket=_bucket(stack, EAST), Key=done["output_key"])["Body"].read()
    assert east == output
    stack.replicated_both_ways(timeout=60)
    west = _s3(stack, WEST).get_object(Bucket=_bucket(stack, WEST), Key=done["output_key"])["Body"].read()
    assert west == output

    # The routing control lives in etcd, where etcdctl sees it.
    record = _etcdctl_get(stack, "/regionflow/control")
    assert record["active_region"] == EAST and record["epoch"] == stack.rf_json("control", "show")["epoch"]

    # Job state is in each region's own PostgreSQL.
    pg = stack.config.region(WEST).postgres
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=pg.port, user="regionflow", dbname="regionflow",
                         password=stack.secrets.postgres_password, connect_timeout=5) as conn:
        rows = conn.execute("select status from jobs where job_id = %s", (job_id,)).fetchall()
    assert rows == [("COMPLETED",)]


def _kill_region_and_its_seaweedfs_with_files_in_flight_then_failover_and_failback(stack: Stack, data) -> None:
    stack.rf("reference", "load", str(data / "financial_data.csv"))
    stack.eventually(lambda: stack.replication(WEST)[EAST]["backlog"]["state"] == 0, timeout=60)
    body = (data / "orders.csv").read_bytes()
    with stack.http(timeout=60) as ap:
        answers = [ap.put(f"/objects/input/s{i:02d}.csv", content=body) for i in range(20)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    jobs = [a.json()["job_id"] for a in answers]
    # 20 files in flight: the region process and its S3 server die together, as in a regional outage
    stack.signal(EAST, signal.SIGKILL)
    stack.signal(f"{EAST}-seaweedfs", signal.SIGKILL)
    stack.eventually(lambda: EAST not in stack.rf_json("status")["processes"], timeout=30, what="us-east-1 dead")

    # The batch plan by name: this test measures the batch switch (the ledger plan, the default on a topology
    # with a ledger, is tested with the ledger in test_ledger_stack.py).
    result = stack.rf_json("failover", "--plan", "batch", "--to", WEST, "--yes", timeout=180)
    assert result["status"] == "SUCCEEDED", result
    assert result["rto_seconds"] < 5.0, result["rto_seconds"]
    assert _etcdctl_get(stack, "/regionflow/control")["active_region"] == WEST
    failover_rto = result["rto_seconds"]

    views = stack.rf_json("wait", *jobs, "--region", WEST, "--timeout", "300", timeout=360)
    expected_ok = {v["rows_ok"] for v in views}
    assert len(expected_ok) == 1  # the same file 20 times: the same result each time
    outputs = set()
    with stack.http(WEST) as w:
        for v in views:
            assert v["status"] == "COMPLETED", v
            assert v["rows_in"] == v["rows_ok"] + v["rows_rejected"] == 2000
            outputs.add(w.get(f"/objects/{v['output_key']}").content)
        listed = [o for o in w.get("/jobs", params={"limit": 1000}).json()["jobs"] if o["job_id"] in jobs]
    assert len(outputs) == 1 and len(listed) == 20  # one correct output each, no job twice
    stack.eventually(lambda: _emls(stack, jobs) == dict.fromkeys(jobs, 1), timeout=60, what="one notification per file")
    with stack.http(WEST) as w:
        notes = [n["job_id"] for n in w.get("/outbox").json()["notifications"] if n["job_id"] in jobs]
    assert sorted(notes) == sorted(jobs)  # one notification record per file, none twice

    # us-east-1 and its SeaweedFS come back (`up` restarts only what is missing), then fail back
    before = {name: stack.pid(name) for name in SERVERS if name != f"{EAST}-seaweedfs"}
    stack.rf("up", "--detach", timeout=120)
    assert {name: stack.pid(name) for name in before} == before  # survivors were not restarted
    stack.settled(EAST, timeout=60)
    # Fail back once us-east-1 has caught up (as `regionflow status` shows an operator): the switch's RTO
    # is then the switch itself, not the time to copy what us-west-2 did meanwhile.
    stack.replicated_both_ways(timeout=120)
    back = stack.rf_json("failback", "--plan", "batch", "--yes", timeout=180)
    assert back["status"] == "SUCCEEDED", back
    steps = [(s["kind"], round(s["ended"] - s["started"], 3)) for s in back["steps"]]
    assert back["rto_seconds"] < 5.0, (back["rto_seconds"], steps)
    assert stack.rf_json("control", "show")["active_region"] == EAST

    def converged() -> bool:
        for j in jobs:
            e, w = stack.job(j, EAST), stack.job(j, WEST)
            keys = ("status", "owner_region", "owner_epoch", "rows_ok", "output_etag", "completing_region")
            if not e or not w or any(e[k] != w[k] for k in keys):
                return False
        return True

    stack.eventually(converged, timeout=90, what="both regions to converge")
    assert _emls(stack, jobs) == dict.fromkeys(jobs, 1)
    with stack.http(EAST) as e:
        for v in views:
            assert e.get(f"/objects/{v['output_key']}").content in outputs
    print(f"\nservers RTO failover {failover_rto:.2f}s, failback {back['rto_seconds']:.2f}s")
    (stack.root.parent / "rto.json").write_text(json.dumps({"failover": failover_rto,
                                                            "failback": back["rto_seconds"]}))


def _quorum_lost_fails_closed_and_failover_changes_nothing(stack: Stack, reference_data) -> None:
    src = Path(reference_data) / "testfile.csv"
    # One etcd member down: the control still answers. Two down (quorum lost): it fails closed, and a
    # failover refuses and changes nothing.
    control = stack.rf_json("control", "show")
    stack.signal("etcd-1", signal.SIGKILL)
    assert stack.rf_json("control", "show")["epoch"] == control["epoch"]
    stack.signal("etcd-2", signal.SIGKILL)
    shown = stack.rf("control", "show", check=False, timeout=60)
    assert shown.returncode != 0 and "etcd" in shown.stderr and "Traceback" not in shown.stderr, shown.stderr
    refused = stack.rf("failover", "--to", WEST, "--yes", "--json", check=False, timeout=180)
    assert refused.returncode != 0, refused.stdout
    with stack.http(timeout=60) as ap:
        upload = ap.put("/objects/input/during-quorum-loss.csv", content=src.read_bytes())
    assert upload.status_code >= 500, upload.text  # no region takes new work without the control
    stack.rf("up", "--detach", timeout=120)  # restarts the two members only
    assert stack.rf_json("control", "show") == control
    assert _etcdctl_get(stack, "/regionflow/control")["active_region"] == EAST


def test_drill_kill_on_servers_loses_and_duplicates_nothing(tmp_path):
    from testenv import REGIONFLOW

    result = subprocess.run([REGIONFLOW, "drill", "--files", "30", "--scenario", "kill", "--servers", "--json",
                             "--report", str(tmp_path / "reports"), "--timeout", "600"],
                            capture_output=True, text=True, timeout=720, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["passed"] is True, report.get("error")
    assert report["lost"] == report["duplicated_outputs"] == report["duplicated_notifications"] == 0
    assert report["submitted"] == 30
    assert report["backends"] == {"control": "etcd", "managed": True, "regions": {
        EAST: {"objects": "s3", "state": "postgresql"}, WEST: {"objects": "s3", "state": "postgresql"}}}
    assert 0 < report["rto_seconds"]["failover"] < 5.0, report["rto_seconds"]
    assert "the region's servers" in result.stderr  # the outage took its SeaweedFS and PostgreSQL too
    print(f"\nservers drill: RTO failover {report['rto_seconds']['failover']:.2f}s, "
          f"failback {report['rto_seconds']['failback']:.2f}s, RPO {report['rpo']['files']} files")


def test_up_names_a_missing_program_in_one_line_and_starts_nothing(servers_root):
    from testenv import REGIONFLOW

    stack = Stack(servers_root)
    servers_root.mkdir(parents=True)
    stack.rf("init", "--dir", ".", "--servers")
    env = {**os.environ, "PATH": str(servers_root / "empty-bin")}  # no etcd on PATH (weed sits in the venv)
    result = subprocess.run([REGIONFLOW, "up", "--detach"], cwd=servers_root, capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode != 0
    assert "etcd is not installed: apt-get install etcd-server" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not list((servers_root / ".regionflow" / "run").glob("*.pid"))  # nothing was started
