"""Uploads with real region processes: sync replication (RPO 0 for acknowledged uploads), the fallback
when the other region stops answering, streamed uploads with bounded memory, and the size limit."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from regionflow.workloads.batch.sample import generate
from stackkit import EAST, WEST, Stack, running_stack

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("uploaddata")
    generate(2000, d, invalid_ratio=0.05, seed=7)
    return d


def _vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def test_every_acknowledged_upload_survives_a_kill_right_after_the_last_ack(tmp_path, data):
    # The bound is long here: on a loaded machine a confirmation must not time out into "lagging", or
    # the test would be about the fallback, which has its own test below.
    with running_stack(tmp_path / "stack", settings={"sync_timeout": "20"}) as stack:
        _kill_right_after_the_last_ack(stack, data)


def _kill_right_after_the_last_ack(stack: Stack, data) -> None:
    stack.rf("reference", "load", str(data / "financial_data.csv"))
    stack.eventually(lambda: stack.replication(WEST)[EAST]["backlog"]["state"] == 0, timeout=30)
    body = (data / "orders.csv").read_bytes()
    answers = []
    with stack.http(timeout=60) as ap:
        for i in range(20):
            resp = ap.put(f"/objects/input/s{i:02d}.csv", content=body)
            assert resp.status_code == 200, resp.text
            answers.append(resp.json())
    stack.signal(EAST, signal.SIGKILL)  # no sleep: the last acknowledgement has just arrived

    for a in answers:
        assert a["region"] == EAST and a["replication"]["confirmed_by"] == [WEST], a
    jobs = [a["job_id"] for a in answers]
    stack.eventually(lambda: EAST not in stack.rf_json("status")["processes"], timeout=15, what="us-east-1 dead")
    result = stack.rf_json("failover", "--to", WEST, "--yes", timeout=180)
    assert result["status"] == "SUCCEEDED", result
    assert result["missing"] == [], result["missing"]  # every input was already in us-west-2

    views = stack.rf_json("wait", *jobs, "--region", WEST, "--timeout", "240", timeout=300)
    assert sorted(v["job_id"] for v in views) == sorted(jobs)
    with stack.http(WEST) as w:
        for v in views:
            assert v["status"] == "COMPLETED", v
            assert v["rows_in"] == v["rows_ok"] + v["rows_rejected"] == 2000
            assert w.head(f"/objects/{v['output_key']}").status_code == 200
        listed = [o for o in w.get("/jobs", params={"limit": 1000}).json()["jobs"] if o["job_id"] in jobs]
    assert len(listed) == 20  # one job per upload, none twice
    assert EAST not in stack.rf_json("status")["processes"]  # it never came back


def test_a_region_that_stops_answering_is_marked_lagging_and_uploads_go_on(tmp_path, data):
    with running_stack(tmp_path / "stack", settings={"sync_timeout": "1"}) as stack:
        with stack.http(EAST, timeout=60) as east:
            first = east.put("/objects/input/before.csv", content=b"a,b\n").json()
            assert first["replication"]["confirmed_by"] == [WEST], first
            assert stack.rf_json("status")["regions"][EAST]["uploads"]["lagging"] == []

            stack.signal(WEST, signal.SIGSTOP)  # alive but silent, like a partition
            t0 = time.monotonic()
            during = east.put("/objects/input/during.csv", content=b"a,b\n").json()
            waited = time.monotonic() - t0
            assert during["replication"]["not_confirmed_by"] == [WEST], during
            assert waited < 10, waited  # acknowledged at the bound, not held up until us-west-2 returns
            report = east.get("/replication").json()["uploads"]
            assert report["lagging"] == [WEST] and report["peers"][WEST]["reason"], report
            metrics = east.get("/metrics").text
            assert f'regionflow_upload_replication_lagging{{peer="{WEST}"}} 1.0' in metrics
            # later uploads do not wait for a lagging region
            later = east.put("/objects/input/later.csv", content=b"a,b\n").json()
            assert later["replication"]["lagging"] == [WEST] and later["replication"]["confirmed_by"] == []
            status = stack.rf("status").stdout
            assert "lagging" in status

            stack.signal(WEST, signal.SIGCONT)
            stack.eventually(lambda: east.get("/replication").json()["uploads"]["lagging"] == [], timeout=60,
                             what="us-west-2 to catch up and be waited for again")
            after = east.put("/objects/input/after.csv", content=b"a,b\n").json()
            assert after["replication"]["confirmed_by"] == [WEST], after
            assert f'regionflow_upload_replication_lagging{{peer="{WEST}"}} 0.0' in east.get("/metrics").text
        with stack.http(WEST) as west:  # what was acknowledged while lagging arrived asynchronously
            for name in ("during", "later"):
                stack.eventually(lambda n=name: west.head(f"/objects/input/{n}.csv").status_code == 200,
                                 timeout=30, what=f"{name}.csv in us-west-2")


def test_a_large_upload_streams_with_bounded_memory_while_the_region_keeps_answering(tmp_path):
    # through the access point, which streams it on to the active region, and back down again
    size = 2 << 30
    block = bytes(range(256)) * 4096  # 1 MiB
    with running_stack(tmp_path / "stack", settings={"max_upload_bytes": '"3GiB"'}) as stack:
        pids = {name: stack.pid(name) for name in (EAST, "access-point")}
        latencies: list[float] = []
        failures: list[str] = []
        done = threading.Event()

        def probe() -> None:
            with stack.http(EAST, timeout=10) as h:
                while not done.is_set():
                    t0 = time.monotonic()
                    try:
                        h.get("/health").raise_for_status()
                        latencies.append(time.monotonic() - t0)
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))
                    done.wait(0.2)

        def body():
            for _ in range(size // len(block)):
                yield block

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        with stack.http(timeout=600) as h:
            resp = h.put("/objects/big/blob.bin", content=body(),
                         headers={"content-length": str(size), "content-type": "application/octet-stream"})
        done.set()
        prober.join(15)
        assert resp.status_code == 200, resp.text
        assert resp.json()["size"] == size and resp.json()["region"] == EAST
        assert not failures, failures[:3]
        assert len(latencies) >= 5 and max(latencies) < 5, (len(latencies), max(latencies or [0]))
        with stack.http(timeout=600) as h:
            head = h.head("/objects/big/blob.bin")
            assert head.status_code == 200
            got = 0
            with h.stream("GET", "/objects/big/blob.bin") as down:
                assert down.status_code == 200 and int(down.headers["content-length"]) == size
                for chunk in down.iter_bytes(1 << 20):
                    got += len(chunk)
            assert got == size
        for name, pid in pids.items():
            peak_mib = _vm_kib(pid, "VmHWM") / 1024
            print(f"peak RSS of {name}: {peak_mib:.0f} MiB")
            assert peak_mib < 300, f"the peak RSS of {name} was {peak_mib:.0f} MiB"


def test_an_upload_over_the_limit_is_refused_and_nothing_is_stored(tmp_path):
    with running_stack(tmp_path / "stack", settings={"max_upload_bytes": '"1MiB"'}) as stack:
        with stack.http(EAST, timeout=60) as h:
            declared = h.put("/objects/input/big.csv", content=b"x" * (2 << 20))
            assert declared.status_code == 413 and "1048576" in declared.json()["detail"]

            def chunked():  # no content-length: the gateway counts as it streams
                for _ in range(2):
                    yield b"y" * (1 << 20)

            streamed = h.put("/objects/input/big2.csv", content=chunked())
            assert streamed.status_code == 413
            assert h.head("/objects/input/big.csv").status_code == 404
            assert h.head("/objects/input/big2.csv").status_code == 404
            assert h.get("/jobs").json()["jobs"] == []
            ok = h.put("/objects/input/small.csv", content=b"a,b\n")  # a good upload beside still works
            assert ok.status_code == 200
        assert not list((stack.root / ".regionflow" / EAST / "uploads").glob("upload-*"))


def test_a_region_that_dies_after_replicating_an_upload_but_before_answering_makes_no_second_version(tmp_path,
                                                                                                        data):
    with running_stack(tmp_path / "stack", settings={"sync_timeout": "20"}) as stack:
        stack.rf("reference", "load", str(data / "financial_data.csv"))
        stack.rf("fault", "inject", EAST, "crash_at", "--param", "point=upload:replicated")
        body = (data / "orders.csv").read_bytes()
        with stack.http(timeout=60) as ap:
            answer = ap.put("/objects/input/once.csv", content=body)
        # us-east-1 stored it, us-west-2 confirmed it, us-east-1 died before answering: the access point
        # finds the copy in us-west-2 and answers with that version instead of storing a second one
        assert answer.status_code == 200, answer.text
        got = answer.json()
        assert got["region"] == WEST and answer.headers["x-regionflow-region"] == WEST
        stack.eventually(lambda: EAST not in stack.rf_json("status")["processes"], timeout=15, what="us-east-1 dead")
        stored_by_east = json.loads((stack.root / ".regionflow" / EAST / "objects" / "meta" / "input" /
                                     "once.csv.json").read_text())["version_id"]
        assert got["version_id"] == stored_by_east  # the version us-east-1 made, not a new one
        with stack.http(WEST) as w:
            head = w.head("/objects/input/once.csv")
            assert head.headers["x-version-id"] == got["version_id"]
        result = stack.rf_json("failover", "--to", WEST, "--yes", timeout=180)
        assert result["status"] == "SUCCEEDED", result
        (view,) = stack.rf_json("wait", got["job_id"], "--region", WEST, "--timeout", "120", timeout=180)
        assert view["status"] == "COMPLETED" and view["rows_in"] == view["rows_ok"] + view["rows_rejected"] == 2000
        with stack.http(WEST) as w:
            jobs = [j for j in w.get("/jobs").json()["jobs"] if j["input_key"] == "input/once.csv"]
        assert [j["job_id"] for j in jobs] == [got["job_id"]]  # one version, one job
