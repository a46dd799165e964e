"""Fault injection through the admin API: each fault does what it says and reverts by itself."""

from __future__ import annotations

import time

import pytest

from regionflow.workloads.batch.sample import generate
from stackkit import EAST, WEST

pytestmark = pytest.mark.timeout(240)


def test_faults_take_effect_show_in_status_and_revert(stack, tmp_path):
    data = tmp_path / "d"
    generate(2000, data, invalid_ratio=0.05, seed=1)
    stack.rf("reference", "load", str(data / "financial_data.csv"))

    # storage unreachable: that region refuses uploads, its deep health fails, status shows the fault
    fault = stack.rf_json("fault", "inject", EAST, "storage_unreachable", "--duration", "3")
    assert fault["kind"] == "storage_unreachable"
    with stack.http(EAST) as e:
        assert e.put("/objects/input/x.csv", content=b"a").status_code == 503
        assert e.get("/health/deep").status_code == 503
    st = stack.rf_json("status")
    assert st["regions"][EAST]["faults"] == ["storage_unreachable"]
    # reverted by itself once its 3 s are up
    stack.eventually(lambda: stack.rf_json("fault", "list") == [], timeout=30, what="the fault to expire")
    with stack.http(EAST) as e:
        assert e.get("/health/deep").status_code == 200
    job_id = stack.rf_json("submit", str(data / "orders.csv"))["job_id"]
    done = stack.rf_json("wait", job_id, "--timeout", "60")[0]
    assert done["status"] == "COMPLETED" and done["rows_in"] == done["rows_ok"] + done["rows_rejected"]

    # replication paused into us-west-2, then resumed automatically
    stack.rf("fault", "inject", WEST, "replication_paused", "--duration", "2", "--param", f"source={EAST}")
    assert stack.replication(WEST)[EAST]["paused"] is True
    stack.eventually(lambda: stack.replication(WEST)[EAST]["paused"] is False, timeout=10, what="auto resume")

    # state slow: calls still succeed, slower
    stack.rf("fault", "inject", EAST, "state_slow", "--duration", "2", "--param", "delay=0.3")
    with stack.http(EAST) as e:
        t0 = time.monotonic()
        assert e.get("/jobs").status_code == 200
        assert time.monotonic() - t0 >= 0.3
    stack.rf("fault", "clear", EAST)
    with stack.http(EAST) as e:
        assert e.get("/admin/faults").status_code == 403  # the API token is not enough
    bad = stack.rf("fault", "inject", EAST, "meteor", check=False)
    assert bad.returncode == 1 and "unknown fault kind 'meteor'" in bad.stderr

    # crash: the region process dies
    stack.rf("fault", "inject", EAST, "crash", "--duration", "1")
    stack.eventually(lambda: EAST not in stack.rf_json("status")["processes"], timeout=10, what="the crash")
