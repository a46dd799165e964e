"""Two real region processes and the access point on loopback ports (issue: two regions on one machine)."""

from __future__ import annotations

import signal

import httpx
import pytest

from regionflow.workloads.batch.sample import generate
from stackkit import EAST, WEST, Stack

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    generate(2000, d, invalid_ratio=0.1, seed=11)
    return d


def _submit(stack: Stack, path, key: str | None = None, region: str | None = None) -> str:
    args = ["submit", str(path)] + (["--key", key] if key else []) + (["--region", region] if region else [])
    return stack.rf_json(*args)["job_id"]


def test_a_file_is_processed_once_by_the_active_region_and_replicated(stack, data):
    stack.rf("reference", "load", str(data / "financial_data.csv"))
    job_id = _submit(stack, data / "orders.csv")
    done = stack.rf_json("wait", job_id, "--timeout", "60")[0]
    assert done["status"] == "COMPLETED"
    assert done["owner_region"] == EAST and done["completing_region"] == EAST and done["owner_epoch"] == 1
    assert done["rows_in"] == done["rows_ok"] + done["rows_rejected"] == 2000
    assert done["rows_rejected"] == 200

    # the standby holds the same job, chunks, rejects and output within a bounded lag
    west = stack.eventually(lambda: (j := stack.job(job_id, WEST)) and j["status"] == "COMPLETED" and j,
                            timeout=10, what="the job to replicate")
    for field in ("owner_region", "rows_ok", "rows_rejected", "output_etag", "completing_region"):
        assert west[field] == done[field]
    assert west["chunks_done"] == west["chunks_total"] == done["chunks_total"]
    east_rejects = stack.rf_json("rejects", job_id, "--region", EAST, "--limit", "5000")
    west_rejects = stack.eventually(lambda: (r := stack.rf_json("rejects", job_id, "--region", WEST, "--limit",
                                                                "5000"))["total"] == 200 and r, timeout=10)
    assert west_rejects["rejects"] == east_rejects["rejects"]
    with stack.http(EAST) as e, stack.http(WEST) as w:
        out_e = e.get(f"/objects/{done['output_key']}")
        out_w = w.get(f"/objects/{done['output_key']}")
    assert out_e.status_code == out_w.status_code == 200 and out_e.content == out_w.content
    assert out_e.headers["x-version-id"] == out_w.headers["x-version-id"]  # version ids kept

    # processed once: the standby never ran it, only counted it as skipped
    with stack.http(WEST) as w:
        metrics = w.get("/metrics").text
    assert "regionflow_files_skipped_total 1.0" in metrics
    assert "regionflow_files_processed_total 0.0" in metrics
    notes = stack.rf_json("outbox", "--records")["notifications"]
    assert {(n["job_id"], n["region"]) for n in notes} == {(job_id, EAST)}
    assert sorted(n["stored_in"] for n in notes) == [EAST, WEST]  # one notification, replicated
    # ... which the outbox shows as one message, recorded by both regions, whose records agree
    [message] = stack.rf_json("outbox")["messages"]
    assert (message["job_id"], message["region"], message["status"]) == (job_id, EAST, "sent")
    assert message["regions"] == [EAST, WEST] and message["differences"] == {}
    human = stack.rf("outbox").stdout
    assert human.count(job_id) == 1 and EAST in human and WEST in human and "disagree" not in human
    emls = list((stack.root / ".regionflow" / "outbox").glob("*.eml"))
    assert [p.stem for p in emls] == [job_id]
    assert f"X-Regionflow-Region: {EAST}" in emls[0].read_text()


def test_stopped_active_region_presigned_link_and_uploads_still_work(stack, data):
    stack.rf("reference", "load", str(data / "financial_data.csv"))
    job_id = _submit(stack, data / "orders.csv")
    done = stack.rf_json("wait", job_id, "--timeout", "60")[0]
    link = done["link"]
    assert link.startswith(stack.url())  # presigned links name the access point
    before = httpx.get(link, timeout=10)
    assert before.status_code == 200 and before.headers["x-regionflow-region"] == EAST
    stack.eventually(lambda: stack.job(job_id, WEST)["status"] == "COMPLETED", timeout=10, what="replication")
    stack.eventually(lambda: all(sum(d["backlog"].values()) == 0 for d in stack.replication(WEST).values()),
                     timeout=10, what="replication to drain")

    stack.signal(EAST, signal.SIGSTOP)
    try:
        after = httpx.get(link, timeout=10)
        assert after.status_code == 200
        assert after.headers["x-regionflow-region"] == WEST
        assert after.content == before.content
        up = stack.rf_json("submit", str(data / "orders.csv"), "--key", "during-outage.csv", timeout=30)
        assert up["region"] == WEST  # the upload landed in the other region
        with stack.http(WEST) as w:
            assert w.head("/objects/input/during-outage.csv").status_code == 200
        # an altered link is refused
        assert httpx.get(link.replace("expires=", "expires=9"), timeout=10).status_code == 403
    finally:
        stack.signal(EAST, signal.SIGCONT)


def test_pausing_a_direction_grows_backlog_and_lag_resuming_drains_them(stack, data):
    stack.rf("reference", "load", str(data / "financial_data.csv"))
    stack.rf("replication", "pause", "--from", EAST, "--to", WEST)
    job_id = _submit(stack, data / "orders.csv")
    stack.rf_json("wait", job_id, "--timeout", "60")
    paused = stack.eventually(
        lambda: (d := stack.replication(WEST)[EAST])["backlog"]["state"] > 0 and min(d["lag_seconds"].values()) >= 1.0
        and d, timeout=30, what="backlog and lag to grow")
    assert paused["paused"] is True
    assert paused["backlog"]["objects"] > 0
    assert paused["lag_seconds"]["state"] >= 1.0 and paused["lag_seconds"]["objects"] >= 1.0
    assert stack.job(job_id, WEST) is None  # nothing applied while paused
    status = stack.rf_json("replication", "status")
    assert any(d["source"] == EAST and d["target"] == WEST and d["paused"] for d in status)

    stack.rf("replication", "resume", "--from", EAST, "--to", WEST)
    drained = stack.eventually(
        lambda: (d := stack.replication(WEST)[EAST])["backlog"] == {"objects": 0, "state": 0} and d,
        timeout=20, what="the backlog to drain")
    assert drained["lag_seconds"] == {"objects": 0.0, "state": 0.0}
    assert stack.job(job_id, WEST)["status"] == "COMPLETED"


def test_set_active_with_a_stale_epoch_is_refused(stack):
    shown = stack.rf_json("control", "show")
    assert (shown["active_region"], shown["epoch"]) == (EAST, 1)
    moved = stack.rf_json("control", "set-active", WEST, "--epoch", "1")
    assert (moved["active_region"], moved["epoch"]) == (WEST, 2)
    stale = stack.rf("control", "set-active", EAST, "--epoch", "1", check=False)
    assert stale.returncode != 0
    assert "epoch 1 is not current" in stale.stderr and "Traceback" not in stale.stderr
    assert stack.rf_json("control", "show")["epoch"] == 2
    with stack.http(token="api") as h:
        assert h.post("/control/active", json={"region": EAST, "epoch": 2}).status_code == 403
    with stack.http(token="admin") as h:
        assert h.post("/control/active", json={"region": EAST, "epoch": 1}).status_code == 409


def test_a_region_paused_while_the_epoch_moved_changes_nothing_the_new_owner_wrote(stack, tmp_path):
    big = tmp_path / "big"
    generate(200000, big, invalid_ratio=0.05, seed=3)
    small = tmp_path / "small"
    generate(500, small, invalid_ratio=0.1, seed=4)
    stack.rf("reference", "load", str(big / "financial_data.csv"))
    stack.eventually(lambda: stack.replication(WEST)[EAST]["backlog"]["state"] == 0, timeout=20)
    # us-east-1 starts a long job, then is frozen mid-way
    stale_job = _submit(stack, big / "orders.csv", key="stale.csv")
    stack.eventually(lambda: (j := stack.job(stale_job, EAST)) and j["chunks_done"] >= 3, timeout=60,
                     interval=0.02, what="the job to be under way")
    stack.signal(EAST, signal.SIGSTOP)
    try:
        stack.rf("control", "set-active", WEST, "--epoch", "1")
        # the new owner does its own work under epoch 2
        with stack.http(WEST) as w:
            job2 = w.put("/objects/input/new-owner.csv", content=(small / "orders.csv").read_bytes()).json()
            w.put("/reference/financial_data", params={"key": "uuid"},
                  content=(big / "financial_data.csv").read_bytes())
        new_id = job2["job_id"]
        done = stack.eventually(lambda: (j := stack.job(new_id, WEST)) and j["status"] == "COMPLETED" and j,
                                timeout=60, what="the new owner's job")
        assert done["owner_epoch"] == 2
        with stack.http(WEST) as w:
            before = {"job": w.get(f"/jobs/{new_id}").json(), "outbox": w.get("/outbox").json()["notifications"],
                      "output": w.get(f"/objects/{done['output_key']}").content}
    finally:
        stack.signal(EAST, signal.SIGCONT)
    # the stale region wakes up, re-reads the control and stops at its next step
    stack.settled(EAST, timeout=60)
    east_view = stack.job(stale_job, EAST)
    assert east_view["status"] not in ("COMPLETED", "NOTIFIED")
    with stack.http(EAST) as e:
        assert all(n["job_id"] != stale_job for n in e.get("/outbox").json()["notifications"])
        assert e.head("/objects/output/completed/stale.csv").status_code == 404
    stack.replicated_both_ways()
    with stack.http(WEST) as w:
        after = {"job": w.get(f"/jobs/{new_id}").json(), "outbox": w.get("/outbox").json()["notifications"],
                 "output": w.get(f"/objects/{done['output_key']}").content}
        stale_in_west = w.get(f"/jobs/{stale_job}").json()
    for field in ("status", "owner_epoch", "rows_ok", "rows_rejected", "output_etag", "completing_region"):
        assert after["job"][field] == before["job"][field]
    assert after["output"] == before["output"]
    assert [n for n in after["outbox"] if n["job_id"] == new_id] == [n for n in before["outbox"]
                                                                     if n["job_id"] == new_id]
    assert stale_in_west["status"] not in ("COMPLETED", "NOTIFIED")
    assert not (stack.root / ".regionflow" / "outbox" / f"{stale_job}.eml").exists()


def test_tokens_and_keys_are_checked(stack):
    with stack.http(EAST, token=None) as anon:
        assert anon.get("/jobs").status_code == 401
        assert anon.put("/objects/input/x.csv", content=b"a").status_code == 401
        assert anon.get("/health").status_code == 200
    with stack.http(token=None) as anon:
        assert anon.get("/jobs").status_code == 401
    with stack.http(EAST, token="wrong") as bad:
        assert bad.get("/jobs").status_code == 401
    with stack.http(EAST) as h:
        before = sorted(p.relative_to(stack.root) for p in stack.root.rglob("*") if "objects" in p.parts)
        for raw in ("/objects/input/%2E%2E/%2E%2E/escape.csv", "/objects/..%2Fescape.csv", "/objects/%2Fetc%2Fx"):
            r = h.put(raw, content=b"x")
            assert r.status_code == 400, (raw, r.status_code, r.text)
        after = sorted(p.relative_to(stack.root) for p in stack.root.rglob("*") if "objects" in p.parts)
        assert before == after
        assert not list(stack.root.parent.glob("escape.csv"))
        assert h.get("/openapi.json").status_code == 200
        # the change feed and raw objects are for regions: the clients' token is refused, here and through
        # the access point, with a message naming the token they need
        for path in ("/internal/feed", "/internal/feed/stats", "/internal/objects/input/x.csv"):
            refused = h.get(path)
            assert refused.status_code == 403 and "replication token" in refused.json()["detail"], path
    with stack.http() as via_access_point:
        assert via_access_point.get("/internal/feed").status_code == 403
    with stack.http(EAST, token="replication") as peer:
        assert peer.get("/internal/feed/stats").status_code == 200
        assert peer.get("/jobs").status_code == 403  # and it opens nothing else


def test_a_killed_region_restarted_with_up_resumes_its_unfinished_work(stack, tmp_path):
    big = tmp_path / "big"
    generate(40000, big, invalid_ratio=0.05, seed=8)
    stack.rf("reference", "load", str(big / "financial_data.csv"))
    job_id = _submit(stack, big / "orders.csv")
    stack.eventually(lambda: (j := stack.job(job_id, EAST)) and j["chunks_done"] >= 2, timeout=60,
                     interval=0.02, what="the job to be under way")
    stack.signal(EAST, signal.SIGKILL)
    stack.eventually(lambda: "us-east-1" not in stack.rf_json("status")["processes"], timeout=10)
    west_view = stack.job(job_id, WEST)
    assert west_view is None or west_view["status"] != "COMPLETED"
    stack.rf("up", "--detach", timeout=90)  # restarts only the missing region
    done = stack.rf_json("wait", job_id, "--timeout", "120")[0]
    assert done["status"] == "COMPLETED" and done["completing_region"] == EAST
    assert done["rows_in"] == done["rows_ok"] + done["rows_rejected"] == 40000
    assert done["chunk_attempts"] >= done["chunks_total"]
    messages = stack.rf_json("outbox")["messages"]
    assert [m["job_id"] for m in messages] == [job_id] and EAST in messages[0]["regions"]
    assert [p.stem for p in (stack.root / ".regionflow" / "outbox").glob("*.eml")] == [job_id]


def test_up_in_the_foreground_stops_everything_on_ctrl_c(tmp_path):
    import subprocess

    from testenv import REGIONFLOW

    s = Stack(tmp_path)
    s.rf("init", "--dir", ".")
    proc = subprocess.Popen([REGIONFLOW, "up"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        run = tmp_path / ".regionflow" / "run"
        s.eventually(lambda: len(list(run.glob("*.pid"))) == 3, timeout=30, what="pid files")
        from regionflow.config import load_config

        cfg = load_config(tmp_path / "regionflow.toml")
        urls = [cfg.region_url(r.name) for r in cfg.regions] + [cfg.access_point_url]
        s.eventually(lambda: all(_healthy(u) for u in urls), timeout=60, what="every process to be healthy")
        pids = [int(p.read_text()) for p in run.glob("*.pid")]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        for pid in pids:
            s.eventually(lambda pid=pid: not _alive(pid), timeout=15, what=f"pid {pid} to exit")
        assert not list(run.glob("*.pid"))
    finally:
        if proc.poll() is None:
            proc.kill()
        s.rf("down", check=False)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == 0
    except ChildProcessError:
        return True
