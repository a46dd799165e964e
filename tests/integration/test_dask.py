"""Chunks on a real Dask cluster (`dask scheduler` + `dask worker` processes): `process --executor
tcp://...`, two regions sharing one scheduler, a worker SIGKILLed mid-job, the scheduler stopped mid-job,
and a region's own `dask://local` cluster started by `up` and stopped by `down`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import polars as pl
import psutil
import pytest

from daskkit import DaskCluster, dask_cluster, wait_for
from regionflow.workloads.batch.sample import generate
from stackkit import EAST, WEST, Stack, running_stack
from testenv import REGIONFLOW

pytestmark = pytest.mark.timeout(420)
CHUNK_TASK = "run_chunk_task"


def _process(args: list[str], cwd: Path) -> dict:
    result = subprocess.run([REGIONFLOW, "process", *args, "--json"], cwd=cwd, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _on_executor(address: str) -> Callable[[str], str]:
    """A regionflow.toml edit: every region runs its chunks on address."""
    return lambda text: text.replace("workers = 2\n", f"workers = 2\nexecutor = \"{address}\"\n")


def test_process_on_a_dask_scheduler_equals_the_independent_join(reference_data: str, tmp_path: Path) -> None:
    orders = Path(reference_data) / "testfile.csv"
    financial = Path(reference_data) / "financial_data.csv"
    with dask_cluster(tmp_path / "dask") as cluster:
        summary = _process([str(orders), "--reference", str(financial), "--out", str(tmp_path / "out.csv"),
                            "--executor", cluster.address, "--chunk-rows", "1000"], tmp_path)
        seen = cluster.task_counts(CHUNK_TASK)
    assert summary["status"] == "COMPLETED" and summary["chunks"] >= 10
    # Every chunk ran as a task on the cluster (and each finished: its result reached memory).
    assert seen.get("memory", 0) >= summary["chunks"]
    expected = pl.read_csv(orders, infer_schema=False).join(
        pl.read_csv(financial, infer_schema=False), on="uuid", how="inner", maintain_order="left")
    got = pl.read_csv(tmp_path / "out.csv", infer_schema=False)
    assert got.height == summary["rows_ok"] == expected.height
    assert got.rows() == expected.rows()
    assert summary["rows_in"] == summary["rows_ok"] + summary["rows_rejected"]


def test_process_rejects_an_executor_it_cannot_use(reference_data: str, tmp_path: Path) -> None:
    orders = Path(reference_data) / "testfile.csv"
    result = subprocess.run([REGIONFLOW, "process", str(orders), "--reference",
                             str(Path(reference_data) / "financial_data.csv"), "--out", str(tmp_path / "o.csv"),
                             "--executor", "dask://remote?workers=2"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "dask://local?workers=N" in result.stderr and not (tmp_path / "o.csv").exists()


def _reference_run(stack: Stack, data: Path, tmp_path: Path) -> tuple[bytes, dict]:
    """The same file processed by `regionflow process` on threads: the output a cluster must give."""
    summary = _process([str(data / "orders.csv"), "--reference", str(data / "financial_data.csv"), "--out",
                        str(tmp_path / "expected.csv")], tmp_path)
    return (tmp_path / "expected.csv").read_bytes(), summary


def _check_job(stack: Stack, job_id: str, tmp_path: Path, expected: bytes, summary: dict) -> None:
    job = stack.rf_json("wait", job_id, "--timeout", "240", timeout=300)[0]
    assert job["status"] == "COMPLETED", job
    assert job["rows_in"] == job["rows_ok"] + job["rows_rejected"]
    assert (job["rows_ok"], job["rows_rejected"]) == (summary["rows_ok"], summary["rows_rejected"])
    stack.rf("download", job_id, "-o", str(tmp_path / "got.csv"))
    assert (tmp_path / "got.csv").read_bytes() == expected
    rejects = stack.rf_json("rejects", job_id, "--limit", "100000")
    rows = [r["row_no"] for r in (rejects["rejects"] if isinstance(rejects, dict) else rejects)]
    assert len(rows) == len(set(rows)) == job["rows_rejected"]  # nothing rejected twice
    messages = stack.rf_json("outbox")["messages"]
    assert [m["job_id"] for m in messages] == [job_id]  # one notification
    assert [p.stem for p in (stack.root / ".regionflow" / "outbox").glob("*.eml")] == [job_id]


def test_two_regions_on_one_scheduler_finish_a_job_whose_worker_was_killed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate(30000, data, invalid_ratio=0.02, seed=5)
    with dask_cluster(tmp_path / "dask") as cluster, \
            running_stack(tmp_path / "stack", edit=_on_executor(cluster.address)) as stack:
        expected, summary = _reference_run(stack, data, tmp_path)
        st = stack.rf_json("status")
        for region in (EAST, WEST):
            ex = st["regions"][region]["executor"]
            assert (ex["kind"], ex["address"], ex["available"]) == ("dask", cluster.address, True)
        stack.rf("reference", "load", str(data / "financial_data.csv"))
        # Slow storage (workers honour the region's faults) keeps chunks running long enough to kill one.
        stack.rf("fault", "inject", EAST, "storage_slow", "--duration", "120", "--param", "delay=0.15")
        job_id = stack.rf_json("submit", str(data / "orders.csv"))["job_id"]
        wait_for(lambda: cluster.processing_on("w0") > 0, what="a chunk running on worker w0")
        cluster.kill(cluster.workers[0])
        running = stack.job(job_id, EAST)
        assert running is not None and running["status"] != "COMPLETED"  # killed mid-job
        stack.rf("fault", "clear", EAST)
        _check_job(stack, job_id, tmp_path, expected, summary)
        assert cluster.task_counts(CHUNK_TASK).get("memory", 0) >= running["chunks_total"]


def test_a_job_pauses_while_the_scheduler_is_down_and_resumes_after_it_restarts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate(30000, data, invalid_ratio=0.02, seed=6)
    cluster = DaskCluster(tmp_path / "dask")
    try:
        cluster.start()
        with running_stack(tmp_path / "stack", edit=_on_executor(cluster.address)) as stack:
            expected, summary = _reference_run(stack, data, tmp_path)
            stack.rf("reference", "load", str(data / "financial_data.csv"))
            stack.rf("fault", "inject", EAST, "storage_slow", "--duration", "120", "--param", "delay=0.15")
            job_id = stack.rf_json("submit", str(data / "orders.csv"))["job_id"]
            wait_for(lambda: (stack.job(job_id, EAST) or {}).get("chunks_done", 0) >= 1, what="a chunk done")
            cluster.stop()  # the scheduler and its workers, SIGKILLed
            stack.rf("fault", "clear", EAST)

            def paused() -> bool:
                ex = stack.rf_json("status")["regions"][EAST]["executor"]
                return ex is not None and not ex["available"]

            wait_for(paused, what="us-east-1 to report its executor unavailable")
            job = stack.job(job_id, EAST)
            assert job is not None and job["status"] == "PROCESSING" and job["chunks_done"] < job["chunks_total"]
            cluster.start()  # same address, as a supervisor would bring it back
            _check_job(stack, job_id, tmp_path, expected, summary)
    finally:
        cluster.stop()


def test_up_starts_and_down_stops_a_regions_local_dask_cluster(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate(5000, data, invalid_ratio=0.02, seed=7)
    stack = Stack(tmp_path / "stack")
    (tmp_path / "stack").mkdir()
    workers: list[psutil.Process] = []
    try:
        stack.start(edit=_on_executor("dask://local?workers=2"))
        expected, summary = _reference_run(stack, data, tmp_path)
        st = stack.rf_json("status")
        for region in (EAST, WEST):
            ex = st["regions"][region]["executor"]
            assert (ex["kind"], ex["workers"], ex["available"]) == ("dask", 2, True)
            assert ex["address"].startswith("tcp://127.0.0.1:")
        workers = [p for p in psutil.Process(stack.pid(EAST)).children(recursive=True)
                   if "distributed" in " ".join(p.cmdline()) or "multiprocessing" in " ".join(p.cmdline())]
        assert len(workers) >= 2
        stack.rf("reference", "load", str(data / "financial_data.csv"))
        job_id = stack.rf_json("submit", str(data / "orders.csv"))["job_id"]
        _check_job(stack, job_id, tmp_path, expected, summary)
    finally:
        stack.stop()
    gone = psutil.wait_procs(workers, timeout=30)[1]
    assert gone == [], f"worker processes outlived the region: {gone}"


def test_a_task_that_keeps_killing_its_worker_is_reported_lost_and_the_rest_complete(tmp_path: Path) -> None:
    from executorkit import exit_on_two
    from regionflow.executor import WorkerLost, open_executor

    # The scheduler hands a worker only the task it runs (worker saturation 1.0; by default it may queue one
    # more behind it): a worker killed by item 2 then counts against item 2 alone, not a task waiting there.
    with dask_cluster(tmp_path / "dask", env={"DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0"}) as cluster:
        ex = open_executor(cluster.address, 1)
        try:
            # Item 2 kills every worker process that runs it; the nannies start new ones, and once the
            # scheduler gives up rescheduling it the item is reported lost, never as a result. A result
            # lost with a killed worker after it finished is computed again, not reported as an outage.
            seen = dict(ex.map_unordered(exit_on_two, range(6)))
            assert isinstance(seen[2], WorkerLost) and "died" in str(seen[2])
            assert {k: v for k, v in seen.items() if k != 2} == {0: 0, 1: 1, 3: 3, 4: 4, 5: 5}
            assert dict(ex.map_unordered(exit_on_two, [4, 5])) == {4: 4, 5: 5}
            assert ex.status().in_flight == 0
        finally:
            ex.close()
