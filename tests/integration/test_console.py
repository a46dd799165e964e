"""The console at the access point's /console, driven in headless Debian chromium by Playwright (issue: console).

Needs /usr/bin/chromium (scripts/ensure-browser.sh installs it). Screenshots go to test-artifacts/console/.
"""

from __future__ import annotations

import re
import signal

import httpx
import pytest
from playwright.sync_api import Page, expect
from prometheus_client.parser import text_string_to_metric_families

from browserkit import login, shot
from regionflow.switch.plan import load_plan
from regionflow.workloads.registry import step_registry
from stackkit import EAST, WEST, Stack, running_stack

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    with running_stack(tmp_path_factory.mktemp("console")) as s:
        s.rf("sample", "--rows", "500", "--invalid-ratio", "0.1", "--out", "data")
        s.rf("reference", "load", "data/financial_data.csv")
        job_id = s.rf_json("submit", "data/orders.csv")["job_id"]
        done = s.rf_json("wait", job_id, "--timeout", "60")[0]
        assert done["status"] == "COMPLETED" and done["rows_rejected"] > 0
        s.job_id = job_id
        yield s




def metrics(stack: Stack, region: str) -> dict[tuple[str, frozenset], float]:
    """A region's samples, read through its API: (name, labels) -> value."""
    with stack.http(region) as h:
        text = h.get("/metrics").text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_login_is_required_and_only_the_admin_token_logs_in(stack: Stack, page: Page):
    with httpx.Client(base_url=stack.url(), timeout=10) as anon:
        for path in ("/console/api/overview", "/console/api/jobs", "/console/api/executions"):
            assert anon.get(path).status_code == 401, path
    page.goto(f"{stack.url()}/console")
    expect(page.get_by_test_id("login-form")).to_be_visible()
    assert page.get_by_test_id("regions").count() == 0
    shot(page, "01-login")

    page.get_by_test_id("login-token").fill(stack.secrets.api_token)  # the API token is not the admin token
    with page.expect_response("**/console/login") as answer:
        page.get_by_test_id("login-submit").click()
    assert answer.value.status == 401
    expect(page.get_by_test_id("login-error")).to_contain_text("not the admin token")
    assert page.context.cookies() == []

    login(page, stack)
    [cookie] = [c for c in page.context.cookies() if c["name"] == "rf_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert stack.secrets.admin_token not in cookie["value"] and stack.secrets.api_token not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # page scripts cannot read the session


def test_both_regions_panels_show_the_regions_metrics(stack: Stack, page: Page):
    login(page, stack)
    shown = {"files_processed": ("regionflow_files_processed_total", {}),
             "files_split": ("regionflow_files_split_total", {}),
             "orchestrator_succeeded": ("regionflow_orchestrator_executions_total", {"status": "succeeded"}),
             "files_skipped": ("regionflow_files_skipped_total", {})}
    for region in (EAST, WEST):
        expect(page.get_by_test_id(f"region-{region}")).to_be_visible()
        expect(page.get_by_test_id(f"health-{region}")).to_have_text("UP")
        # where the region's chunks run (its own process pool here), and nothing in flight once idle
        expect(page.get_by_test_id(f"executor-{region}")).to_have_text("executor: processes, 2 workers, 0 in flight")
        for panel in ("files", "orchestrator", "chunks", "lag", "backlog"):
            expect(page.get_by_test_id(f"chart-{region}-{panel}").locator("svg.main-svg").first).to_be_visible()
        values = metrics(stack, region)
        for key, (name, labels) in shown.items():
            expected = int(values.get((name, frozenset(labels.items())), 0.0))
            expect(page.get_by_test_id(f"metric-{region}-{key}")).to_have_text(str(expected))
    # the file was processed once, by the active region
    expect(page.get_by_test_id(f"metric-{EAST}-files_processed")).to_have_text("1")
    expect(page.get_by_test_id(f"metric-{WEST}-files_processed")).to_have_text("0")
    expect(page.get_by_test_id("active-region")).to_have_text(stack.rf_json("control", "show")["active_region"])
    expect(page.get_by_test_id(f"role-{EAST}")).to_have_text("ACTIVE")
    expect(page.get_by_test_id(f"role-{WEST}")).to_have_text("STANDBY")
    expect(page.get_by_test_id(f"replication-{WEST}").locator("tbody tr")).to_have_count(1)
    page.wait_for_timeout(2500)  # a second point on the time series
    shot(page, "02-overview")


def test_a_job_its_rejects_and_its_download_link(stack: Stack, page: Page):
    with stack.http() as h:
        job = h.get(f"/jobs/{stack.job_id}").json()
        rejects = h.get(f"/jobs/{stack.job_id}/rejects", params={"limit": 1}).json()
    assert rejects["total"] == job["rows_rejected"] > 0
    login(page, stack)
    row = page.locator(f'[data-testid="job-row"][data-job-id="{stack.job_id}"]')
    expect(row).to_contain_text("COMPLETED")
    row.click()
    expect(page.get_by_test_id("job-id")).to_have_text(stack.job_id)
    expect(page.get_by_test_id("job-field-owner-region")).to_have_text(job["owner_region"])
    expect(page.get_by_test_id("job-field-rows-rejected")).to_have_text(str(job["rows_rejected"]))
    expect(page.get_by_test_id("job-rejects-total")).to_have_text(str(rejects["total"]))
    expect(page.locator('[data-testid="job-rejects"] tbody tr')).to_have_count(min(rejects["total"], 200))
    expect(page.locator('[data-testid="job-chunks"] tbody tr')).to_have_count(job["chunks_total"])
    link = page.get_by_test_id("job-download")
    expect(link).to_be_visible()
    href = link.get_attribute("href")
    assert href and href.startswith(f"{stack.url()}/o/")
    with stack.http() as h:
        expected = h.get(f"/objects/{job['output_key']}").content
    assert httpx.get(href, timeout=10).content == expected
    shot(page, "03-job")


def test_failover_from_the_console_needs_the_typed_region_and_shows_the_execution(stack: Stack, page: Page):
    assert stack.rf_json("control", "show")["active_region"] == EAST
    login(page, stack)
    expect(page.get_by_test_id("active-region")).to_have_text(EAST)
    page.get_by_test_id("failover-button").click()
    expect(page.get_by_test_id("switch-dialog")).to_be_visible()
    expect(page.get_by_test_id("switch-target")).to_have_value(WEST)
    submit = page.get_by_test_id("switch-submit")
    expect(submit).to_be_disabled()
    page.get_by_test_id("switch-confirm").fill("us-west")
    expect(submit).to_be_disabled()
    page.get_by_test_id("switch-confirm").fill(WEST)
    expect(submit).to_be_enabled()
    submit.click()

    expect(page.get_by_test_id("switch-status")).to_have_text("SUCCEEDED", timeout=45_000)
    steps = page.get_by_test_id("switch-steps").get_by_test_id("step-status")
    plan_steps = len(load_plan(stack.config.plan_path, step_registry()).workflow("us-west-2"))
    expect(steps).to_have_count(plan_steps)
    expect(steps).to_have_text(["SUCCEEDED"] * plan_steps)
    expect(page.get_by_test_id("switch-active")).to_contain_text(f"active region now: {WEST}")
    expect(page.get_by_test_id("active-region")).to_have_text(WEST)
    expect(page.get_by_test_id(f"role-{WEST}")).to_have_text("ACTIVE")
    shot(page, "04-failover")
    assert stack.rf_json("control", "show")["active_region"] == WEST

    page.get_by_test_id("switch-cancel").click()
    exec_id = page.get_by_test_id("switch-execution-id").text_content()
    row = page.locator(f'[data-testid="execution-row"][data-execution-id="{exec_id}"]')
    expect(row).to_contain_text("SUCCEEDED")
    row.click()
    timeline = page.get_by_test_id("execution-steps").get_by_test_id("step-status")
    expect(timeline).to_have_text(["SUCCEEDED"] * plan_steps)
    shot(page, "05-executions")


def test_the_console_loads_and_marks_a_stopped_region_down(stack: Stack, page: Page):
    stack.signal(EAST, signal.SIGSTOP)
    try:
        login(page, stack)
        expect(page.get_by_test_id(f"health-{EAST}")).to_have_text("DOWN")
        expect(page.get_by_test_id(f"health-{WEST}")).to_have_text("UP")
        expect(page.get_by_test_id(f"region-{EAST}")).to_have_class(re.compile(r"\bdown\b"))
        expect(page.get_by_test_id("down-banner")).to_contain_text(f"{EAST} is down")
        expect(page.locator(f'[data-testid="job-row"][data-job-id="{stack.job_id}"]')).to_be_visible()
        expect(page.get_by_test_id(f"metric-{WEST}-files_processed")).not_to_have_text("–")
        shot(page, "06-region-down")
    finally:
        stack.signal(EAST, signal.SIGCONT)


def test_switching_is_refused_without_the_admin_session(stack: Stack):
    before = stack.rf_json("control", "show")
    target = EAST if before["active_region"] == WEST else WEST
    body = {"target": target, "confirm": target}
    for token in (None, stack.secrets.api_token, stack.secrets.admin_token):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with httpx.Client(base_url=stack.url(), headers=headers, timeout=10) as h:
            assert h.post("/console/api/switch", json=body).status_code == 401
    with stack.http(target, token="api") as h:  # the region refuses a plan run with only the API token
        r = h.post("/plans/run", json={"plan_path": stack.config.plan_path, "activate": target})
        assert r.status_code == 403
    with httpx.Client(base_url=stack.url(), timeout=10) as session:
        assert session.post("/console/login", data={"token": stack.secrets.admin_token}).status_code == 303
        assert session.get("/console/api/overview").status_code == 200
        wrong = session.post("/console/api/switch", json={"target": target, "confirm": target.upper()})
        assert wrong.status_code == 400 and "type the target region's name" in wrong.json()["detail"]
        session.post("/console/logout")
        assert session.get("/console/api/overview").status_code == 401
    after = stack.rf_json("control", "show")
    assert (after["active_region"], after["epoch"]) == (before["active_region"], before["epoch"])


def test_an_execution_waiting_for_approval_is_approved_from_the_console(stack: Stack, page: Page):
    before = stack.rf_json("control", "show")
    target = EAST if before["active_region"] == WEST else WEST
    plan = stack.root / "plans" / "gated.yaml"  # under the project's plans/, where plans are allowed
    plan.parent.mkdir(exist_ok=True)
    gated = "    - kind: manual_approval\n      prompt: ok to switch?\n      timeout: 60\n    - kind: routing_control\n"
    plan.write_text(f"name: gated\nregions: [{EAST}, {WEST}]\nworkflows:\n  {EAST}:\n{gated}  {WEST}:\n{gated}")
    with stack.http(target, token="admin") as h:
        started = h.post("/plans/run", json={"plan_path": str(plan), "activate": target, "started_by": "test"})
    assert started.status_code == 200, started.text
    exec_id = started.json()["execution_id"]
    with stack.http(target) as h:
        stack.eventually(lambda: h.get(f"/plans/executions/{exec_id}").json()["status"] == "WAITING_APPROVAL",
                         timeout=15, what="the execution to wait for approval")
    with httpx.Client(base_url=stack.url(), timeout=10) as anon:  # no session: refused
        r = anon.post(f"/console/api/executions/{exec_id}/approve", json={"region": target, "confirm": target})
        assert r.status_code == 401

    login(page, stack)
    row = page.locator(f'[data-testid="execution-row"][data-execution-id="{exec_id}"]')
    expect(row).to_contain_text("WAITING_APPROVAL")
    button = row.get_by_test_id("approve-button")
    expect(button).to_be_visible()
    button.click()
    expect(page.get_by_test_id("approve-dialog")).to_be_visible()
    expect(page.get_by_test_id("approve-target")).to_have_text(target)
    expect(page.get_by_test_id("approve-prompt")).to_have_text("ok to switch?")
    expect(page.get_by_test_id("approve-deadline")).to_contain_text("then abort")
    submit = page.get_by_test_id("approve-submit")
    expect(submit).to_be_disabled()
    page.get_by_test_id("approve-confirm").fill(target.upper())
    expect(submit).to_be_disabled()
    page.get_by_test_id("approve-confirm").fill(target)
    expect(submit).to_be_enabled()
    shot(page, "07-approve")
    submit.click()
    expect(page.get_by_test_id("approve-result")).to_contain_text(f"approved {exec_id}")
    expect(row).to_contain_text("SUCCEEDED", timeout=30_000)
    expect(row.get_by_test_id("approve-button")).to_have_count(0)
    record = stack.rf_json("plan", "show", exec_id)
    assert record["status"] == "SUCCEEDED" and record["steps"][0]["output"]["approved_by"] == "console"
    after = stack.rf_json("control", "show")
    assert (after["active_region"], after["epoch"]) == (target, before["epoch"] + 1)
    page.get_by_test_id("approve-cancel").click()
    shot(page, "08-approved")
