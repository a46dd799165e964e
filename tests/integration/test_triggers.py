"""Automatic failover on a `regionflow init --auto-failover` stack (real processes): SIGKILL of the primary
starts an execution that waits for approval; approving it completes the failover and every job; a region
that is down for less than the trigger's `for:` starts nothing."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from browserkit import chromium, console_page, login, shot
from regionflow.workloads.batch.sample import generate
from stackkit import EAST, WEST, Stack, running_stack
from testenv import REGIONFLOW

pytestmark = pytest.mark.timeout(360)

FILES = 16
ROWS = 20000


@pytest.fixture
def auto(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path / "stack", init_args=("--auto-failover",)) as s:
        yield s


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("triggerdata")
    generate(ROWS, d, invalid_ratio=0.05, seed=33)
    single = subprocess.run([REGIONFLOW, "process", str(d / "orders.csv"), "--reference", str(d / "financial_data.csv"),
                             "--out", str(d / "single.csv")], capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr
    return d


def _west_trigger(stack: Stack) -> dict:
    """us-west-2's primary-down trigger as it last evaluated it (asked directly: the CLI also asks us-east-1,
    which may not answer)."""
    with stack.http(WEST) as w:
        status = w.get("/plans/triggers").json()
    [trigger] = status["triggers"]
    assert trigger["name"] == "primary-down", status
    return {**trigger, "now": status["now"]}


def _west_loaded(stack: Stack) -> bool:
    """Whether us-west-2's trigger loop has read the plan (its first tick comes a moment after start-up)."""
    with stack.http(WEST) as w:
        return bool(w.get("/plans/triggers").json()["triggers"])


def _emls(stack: Stack) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in (stack.root / ".regionflow").rglob("*.eml"):
        counts[p.stem] = counts.get(p.stem, 0) + 1
    return counts


def test_sigkill_of_the_primary_waits_for_approval_and_approving_fails_over(auto: Stack, data: Path):
    stack = auto
    assert stack.config.plan == str(stack.root / "plans" / "auto-failover.yaml")
    stack.eventually(lambda: _west_loaded(stack), timeout=30, what="us-west-2 to load its triggers")
    stack.rf("reference", "load", str(data / "financial_data.csv"))
    stack.eventually(lambda: stack.replication(WEST)[EAST]["backlog"]["state"] == 0, timeout=30)
    with stack.http() as ap:
        jobs = [ap.put(f"/objects/input/a{i:02d}.csv", content=(data / "orders.csv").read_bytes()).json()["job_id"]
                for i in range(FILES)]
    stack.eventually(lambda: sum((stack.job(j, EAST) or {}).get("status") == "COMPLETED" for j in jobs) >= 2,
                     timeout=120, interval=0.05, what="a few jobs to finish")
    assert _west_trigger(stack)["holds"] is False
    killed = time.monotonic()
    stack.signal(EAST, signal.SIGKILL)

    def waiting() -> dict | None:
        rows = stack.rf_json("plan", "executions", timeout=30)
        return next((r for r in rows if r["status"] == "WAITING_APPROVAL"), None)

    pending = stack.eventually(waiting, timeout=30, interval=0.5, what="an execution waiting for approval")
    to_waiting = time.monotonic() - killed
    assert pending["started_by"] == "trigger:primary-down" and pending["target"] == WEST
    assert pending["region"] == WEST
    reason = pending["trigger"]
    assert reason["condition"] == f"region_unhealthy: {EAST}" and reason["held_seconds"] >= 10
    assert reason["evaluated_in"] == WEST and reason["observed"].startswith("unreachable")
    assert pending["waiting_for"]["on_timeout"] == "proceed"
    assert stack.rf_json("control", "show")["active_region"] == EAST  # nothing changed before approval
    state = _west_trigger(stack)
    assert state["execution_id"] == pending["execution_id"] and state["armed"] is False
    cli_state = stack.rf_json("plan", "triggers", timeout=60)
    assert cli_state[WEST]["triggers"][0]["execution_id"] == pending["execution_id"] and "error" in cli_state[EAST]

    # the console shows it, with its Approve button
    with chromium() as browser, console_page(browser) as page:
        login(page, stack)
        row = page.locator(f'[data-testid="execution-row"][data-execution-id="{pending["execution_id"]}"]')
        expect(row).to_contain_text("WAITING_APPROVAL")
        expect(row).to_contain_text("trigger:primary-down")
        expect(row.get_by_test_id("approve-button")).to_be_visible()
        row.click()
        expect(page.get_by_test_id("execution-reason")).to_contain_text(
            f"started by trigger primary-down: region_unhealthy: {EAST}")
        expect(page.get_by_test_id("execution-waiting")).to_contain_text("then proceed")
        shot(page, "10-trigger-waiting-for-approval")

    approved = time.monotonic()
    stack.rf("plan", "approve", pending["execution_id"])

    def finished() -> dict | None:
        [rec] = [r for r in stack.rf_json("plan", "executions", timeout=30)
                 if r["execution_id"] == pending["execution_id"]]
        return rec if rec["status"] in ("SUCCEEDED", "FAILED", "ABORTED") else None

    record = stack.eventually(finished, timeout=90, interval=0.5, what="the failover to finish")
    after_approval = time.monotonic() - approved
    assert record["status"] == "SUCCEEDED", record
    assert [s["kind"] for s in record["steps"]] == ["manual_approval", "health_check", "wait_replication",
                                                    "routing_control", "wait_replication", "reconcile"]
    assert record["steps"][0]["output"]["approved_by"].endswith("@cli")
    assert all(s["status"] == "SUCCEEDED" for s in record["steps"])
    control = stack.rf_json("control", "show")
    assert (control["active_region"], control["epoch"]) == (WEST, 2)

    views = stack.rf_json("wait", *jobs, "--region", WEST, "--timeout", "180", timeout=240)
    single = (data / "single.csv").read_bytes()
    with stack.http(WEST) as w:
        for v in views:
            assert v["status"] == "COMPLETED", v
            assert v["rows_in"] == v["rows_ok"] + v["rows_rejected"] == ROWS
            assert w.get(f"/objects/{v['output_key']}").content == single  # nothing lost, nothing twice
        notes = w.get("/outbox").json()["notifications"]
    assert [v for v in views if v["completing_region"] == WEST], "every job had finished before the kill"
    assert sorted(n["job_id"] for n in notes) == sorted(jobs)
    assert _emls(stack) == {j: 1 for j in jobs}
    # the trigger does not fire again: us-west-2 is active now
    assert _west_trigger(stack)["note"] == f"{WEST} is the active region"
    assert len(stack.rf_json("plan", "executions")) == 1
    print(f"\nSIGKILL -> waiting for approval {to_waiting:.1f}s; approval -> SUCCEEDED {after_approval:.1f}s; "
          f"recorded RTO {record['rto_seconds']:.2f}s (from the trigger firing, approval wait included)")


def test_a_region_down_for_3s_starts_nothing(auto: Stack):
    stack = auto
    stack.eventually(lambda: _west_loaded(stack) and _west_trigger(stack)["last_evaluated"] is not None,
                     timeout=30, what="us-west-2 to evaluate its trigger")
    stack.signal(EAST, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        stack.eventually(lambda: _west_trigger(stack)["holds"], timeout=10, interval=0.2,
                         what="us-west-2 to see us-east-1 down")
        time.sleep(max(0.0, 3.0 - (time.monotonic() - stopped)))  # the outage itself lasts 3 s
    finally:
        stack.signal(EAST, signal.SIGCONT)

    def seen_down_and_up_for_longer_than_for() -> dict | None:
        t = _west_trigger(stack)
        done = (t["went_true"] >= 1 and t["cleared"] >= 1 and not t["holds"]
                and t["now"] - t["first_true_at"] >= t["for_seconds"] + 1)
        return t if done else None

    state = stack.eventually(seen_down_and_up_for_longer_than_for, timeout=30, interval=0.5,
                             what="the condition to clear and the for: duration to pass")
    assert state["last_fired"] is None and state["execution_id"] is None and state["armed"]
    assert stack.rf_json("plan", "executions") == []
    control = stack.rf_json("control", "show")
    assert (control["active_region"], control["epoch"]) == (EAST, 1)


def test_a_bad_trigger_is_refused_with_its_line_and_no_traceback(tmp_path: Path):
    plan = tmp_path / "bad.yaml"
    plan.write_text(f"name: b\nregions: [{EAST}, {WEST}]\nworkflows:\n  {WEST}:\n    - kind: routing_control\n"
                    f"triggers:\n  - name: lag\n    expr: 'sum(regionflow_replication_lag_seconds > 30'\n"
                    f"    for: 1m\n    activate: {WEST}\n")
    result = subprocess.run([REGIONFLOW, "plan", "validate", str(plan), "--offline"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "bad.yaml:8: expr: expected ) to close sum(, found '> 30' (column 40 of" in " ".join(result.stderr.split())
    plan.write_text(plan.read_text().replace("_seconds > 30", "_seconds) > 30"))
    ok = subprocess.run([REGIONFLOW, "plan", "validate", str(plan), "--offline", "--json"], capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
