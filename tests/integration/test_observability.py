"""Metrics, structured logs and the canary, on a real stack."""

from __future__ import annotations

import json
import re

import pytest

from regionflow.workloads.batch.sample import generate
from stackkit import EAST, WEST

pytestmark = pytest.mark.timeout(180)

REQUIRED = [
    "regionflow_files_split_total", "regionflow_files_processed_total", "regionflow_orchestrator_executions_total",
    "regionflow_chunk_executions_total", "regionflow_files_reconciled_total", "regionflow_files_skipped_total",
    "regionflow_rows_total", "regionflow_replication_backlog", "regionflow_replication_lag_seconds",
    "regionflow_active", "regionflow_epoch", "regionflow_plan_executions_total", "regionflow_notifications_total",
    "regionflow_request_seconds_bucket", "regionflow_canary_total",
]

STANDBY_ZERO = [
    ("regionflow_orchestrator_executions_total", "status", ("started", "succeeded", "failed", "interrupted")),
    ("regionflow_chunk_executions_total", "status", ("started", "succeeded", "failed")),
    ("regionflow_rows_total", "outcome", ("ok", "rejected")),
    ("regionflow_notifications_total", "status", ("sent", "duplicate")),
    ("regionflow_plan_executions_total", "status", ("succeeded", "failed")),
]


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(?:\{([^}]*)\})? ([0-9.e+-]+)$", line)
        if m and m.group(1) == name:
            got = ",".join(sorted(m.group(2).split(","))) if m.group(2) else ""
            if got == want:
                return float(m.group(3))
    raise AssertionError(f"no sample {name}{{{want}}}")


@pytest.fixture
def stack_config() -> str:
    return "[canary]\ninterval = 1.0\n"  # a canary every second, so the test sees several


def test_metrics_logs_and_canary(stack, tmp_path):
    # the standby region runs no job, yet exposes every labelled batch series (at 0) from the start
    with stack.http(WEST) as w:
        standby = w.get("/metrics").text
    for name, label, values in STANDBY_ZERO:
        for value in values:
            assert metric(standby, name, **{label: value}) == 0, (name, value)
    assert metric(standby, "regionflow_replication_backlog", source=EAST, target=WEST, kind="state") >= 0

    data = tmp_path / "data"
    generate(3000, data, invalid_ratio=0.1, seed=2)
    stack.rf("reference", "load", str(data / "financial_data.csv"))
    job_id = stack.rf_json("submit", str(data / "orders.csv"))["job_id"]
    job = stack.rf_json("wait", job_id, "--timeout", "60")[0]
    stack.eventually(lambda: stack.job(job_id, WEST) is not None, timeout=20)

    with stack.http(EAST) as e, stack.http(WEST) as w:
        east, west = e.get("/metrics").text, w.get("/metrics").text
    for name in REQUIRED:
        assert name in east, name
    canaries = metric(east, "regionflow_files_processed_total") - 1  # canary jobs also count as files
    assert canaries >= 0
    assert metric(east, "regionflow_files_split_total") >= 1
    assert metric(east, "regionflow_chunk_executions_total", status="started") == metric(
        east, "regionflow_chunk_executions_total", status="succeeded")
    assert metric(east, "regionflow_chunk_executions_total", status="succeeded") >= job["chunks_total"]
    assert metric(east, "regionflow_rows_total", outcome="rejected") == job["rows_rejected"] == 300
    assert metric(east, "regionflow_rows_total", outcome="ok") == job["rows_ok"]
    assert metric(east, "regionflow_active", region=EAST) == 1 and metric(east, "regionflow_active", region=WEST) == 0
    assert metric(east, "regionflow_epoch") == 1
    assert metric(west, "regionflow_files_processed_total") == 0
    assert metric(west, "regionflow_files_skipped_total") >= 1
    assert metric(east, "regionflow_notifications_total", status="sent") >= 1
    metric(west, "regionflow_replication_backlog", source=EAST, target=WEST, kind="objects")

    # the canary ran end to end through the access point and recorded its latency
    def canary_ok() -> bool:
        with stack.http(EAST) as e:
            text = e.get("/metrics").text
        try:
            return metric(text, "regionflow_canary_total", status="succeeded") >= 1 and metric(
                text, "regionflow_canary_latency_seconds") > 0
        except AssertionError:
            return False

    stack.eventually(canary_ok, timeout=30, what="a successful canary")

    # structured logs: JSON lines with region and epoch, and the job id on job lines
    lines = [json.loads(x) for x in (stack.root / ".regionflow" / "logs" / f"{EAST}.log").read_text().splitlines()
             if x.startswith("{")]
    assert lines and all(x["region"] == EAST for x in lines)
    job_lines = [x for x in lines if x.get("job_id") == job_id]
    assert job_lines and all(x["epoch"] == 1 for x in job_lines)
