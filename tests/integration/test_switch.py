"""Region switch with real region processes: failover under load, failback, missing objects, approval,
practice mode, and refused plans."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from regionflow.workloads.batch.sample import generate
from stackkit import EAST, WEST, Stack
from testenv import REGIONFLOW

pytestmark = pytest.mark.timeout(420)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("switchdata")
    generate(20000, d, invalid_ratio=0.05, seed=21)
    single = subprocess.run([REGIONFLOW, "process", str(d / "orders.csv"), "--reference", str(d / "financial_data.csv"),
                             "--out", str(d / "single.csv")], capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr
    return d


def _emls(stack: Stack) -> dict[str, int]:
    """Messages the recipient got, per job (the stack's outbox, which every region delivers to)."""
    counts: dict[str, int] = {}
    for p in (stack.root / ".regionflow").rglob("*.eml"):
        counts[p.stem] = counts.get(p.stem, 0) + 1
    return counts


def _chunks(stack: Stack, job_id: str, region: str) -> list[dict]:
    with stack.http(region) as h:
        return h.get(f"/jobs/{job_id}/chunks").json()["chunks"]


def _present(stack: Stack, region: str, key: str | None) -> bool:
    if not key:
        return False
    with stack.http(region) as h:
        return h.head(f"/objects/{key}").status_code == 200


def _kill(stack: Stack, region: str) -> None:
    stack.signal(region, signal.SIGKILL)
    stack.eventually(lambda: region not in stack.rf_json("status")["processes"], timeout=15, what=f"{region} dead")


def test_failover_under_load_then_failback(stack, data):
    stack.rf("reference", "load", str(data / "financial_data.csv"))
    stack.eventually(lambda: stack.replication(WEST)[EAST]["backlog"]["state"] == 0, timeout=30)
    with stack.http() as ap:
        jobs = [ap.put(f"/objects/input/f{i:02d}.csv", content=(data / "orders.csv").read_bytes()).json()["job_id"]
                for i in range(20)]
    # 20 files in flight: kill the active region once a few are done and the rest are not
    stack.eventually(lambda: sum((stack.job(j, EAST) or {}).get("status") == "COMPLETED" for j in jobs) >= 2,
                     timeout=120, interval=0.05, what="a few jobs to finish")
    _kill(stack, EAST)

    # what had reached the standby before the switch
    replicated_done = {}
    for j in jobs:
        for c in _chunks(stack, j, WEST):
            if c["status"] == "DONE" and _present(stack, WEST, c["out_key"]):
                replicated_done[(j, c["idx"])] = c["attempts"]

    result = stack.rf_json("failover", "--to", WEST, "--yes", timeout=120)
    assert result["status"] == "SUCCEEDED", result
    assert result["rto_seconds"] < 5.0, result["rto_seconds"]
    assert result["desired_rto_seconds"] == 60
    kinds = [s["kind"] for s in result["steps"]]
    assert kinds == ["health_check", "wait_replication", "routing_control", "wait_replication", "reconcile"]
    assert all(s["status"] == "SUCCEEDED" and s["started"] and s["ended"] for s in result["steps"])
    assert result["steps"][1]["output"][EAST]["confirmed"] is False  # the killed region could not confirm
    assert stack.rf_json("control", "show")["active_region"] == WEST
    failover_rto = result["rto_seconds"]

    views = stack.rf_json("wait", *jobs, "--region", WEST, "--timeout", "180", timeout=240)
    single = (data / "single.csv").read_bytes()
    with stack.http(WEST) as w:
        for v in views:
            assert v["status"] == "COMPLETED", v
            assert v["rows_in"] == v["rows_ok"] + v["rows_rejected"] == 20000
            assert w.get(f"/objects/{v['output_key']}").content == single  # byte-identical, exactly one output
    # chunks whose outputs had replicated were not processed again
    for (j, idx), attempts in replicated_done.items():
        after = {c["idx"]: c for c in _chunks(stack, j, WEST)}[idx]
        assert after["attempts"] == attempts, (j, idx)
    assert replicated_done, "nothing had replicated; the test proves nothing about chunk resumption"
    resumed_by_west = [v for v in views if v["completing_region"] == WEST]
    assert resumed_by_west, "every job had finished before the kill; the test proves nothing"
    # exactly one notification per file
    assert _emls(stack) == {j: 1 for j in jobs}
    with stack.http(WEST) as w:
        notes = w.get("/outbox").json()["notifications"]
    assert sorted(n["job_id"] for n in notes) == sorted(jobs)

    # (b) the killed region comes back: it must not resume work it no longer owns
    stack.rf("up", "--detach", timeout=90)
    stack.settled(EAST)
    assert _emls(stack) == {j: 1 for j in jobs}
    back = stack.rf_json("failback", "--yes", timeout=180)
    assert back["status"] == "SUCCEEDED", back
    assert back["steps"][1]["output"][WEST]["confirmed"] is True  # the returning region caught up first
    assert stack.rf_json("control", "show")["active_region"] == EAST
    failback_rto = back["rto_seconds"]

    def converged() -> bool:
        for j in jobs:
            e, w = stack.job(j, EAST), stack.job(j, WEST)
            keys = ("status", "owner_region", "owner_epoch", "rows_ok", "rows_rejected", "output_etag",
                    "completing_region")
            if not e or not w or any(e[k] != w[k] for k in keys):
                return False
        return True

    stack.eventually(converged, timeout=30, what="both regions to converge")
    with stack.http(EAST) as e:
        assert sorted(n["job_id"] for n in e.get("/outbox").json()["notifications"]) == sorted(jobs)
    assert _emls(stack) == {j: 1 for j in jobs}
    executions = stack.rf_json("plan", "executions")
    assert [x["target"] for x in executions[:2]] == [EAST, WEST]
    print(f"\nRTO failover {failover_rto:.2f}s, failback {failback_rto:.2f}s")
    (stack.root.parent / "rto.json").write_text(json.dumps({"failover": failover_rto, "failback": failback_rto}))


def test_an_object_that_never_replicated_is_reported_and_completes_when_its_region_returns(stack, tmp_path):
    big = tmp_path / "big"
    generate(150000, big, invalid_ratio=0.02, seed=5)
    stack.rf("reference", "load", str(big / "financial_data.csv"))
    stack.eventually(lambda: stack.replication(WEST)[EAST]["backlog"]["state"] == 0, timeout=30)
    stack.rf("replication", "pause", "--from", EAST, "--to", WEST, "--kind", "objects")
    job_id = stack.rf_json("submit", str(big / "orders.csv"), "--key", "lost.csv")["job_id"]
    stack.eventually(lambda: stack.job(job_id, WEST) is not None, timeout=30, interval=0.05,
                     what="the job's state to replicate")
    _kill(stack, EAST)
    assert stack.job(job_id, WEST)["status"] != "COMPLETED"
    result = stack.rf_json("failover", "--to", WEST, "--yes", timeout=120)
    assert result["status"] == "SUCCEEDED"
    missing = {m["job_id"]: m for m in result["missing"]}
    assert job_id in missing and "input/lost.csv" in missing[job_id]["missing"]
    shown = stack.rf_json("plan", "show", result["execution_id"])
    assert job_id in {m["job_id"] for m in shown["missing"]}
    log = stack.root / ".regionflow" / "logs" / f"{WEST}.log"
    stack.eventually(lambda: f"waiting for input of {job_id}" in log.read_text(), timeout=30,
                     what="us-west-2 to try the job and find its input missing")
    assert stack.job(job_id, WEST)["status"] != "COMPLETED"  # it waits for its object

    stack.rf("up", "--detach", timeout=90)  # the failed region returns...
    stack.rf("replication", "resume", "--from", EAST, "--to", WEST, "--kind", "objects")  # ...and replication resumes
    done = stack.eventually(lambda: (j := stack.job(job_id, WEST)) and j["status"] == "COMPLETED" and j,
                            timeout=180, what="the missing job to complete by itself")
    assert done["completing_region"] == WEST and done["owner_epoch"] == 2
    assert done["rows_in"] == done["rows_ok"] + done["rows_rejected"] == 150000
    assert _emls(stack).get(job_id) == 1


def _write_plan(path: Path, steps: str) -> Path:
    path.write_text(f"""name: gated
regions: [us-east-1, us-west-2]
desired_rto_seconds: 30
workflows:
  us-west-2:
{steps}
""")
    return path


def test_manual_approval_blocks_until_approved_and_practice_changes_nothing(stack, data):
    stack.rf("reference", "load", str(data / "financial_data.csv"))
    job_id = stack.rf_json("submit", str(data / "orders.csv"))["job_id"]
    stack.rf_json("wait", job_id, "--timeout", "60")
    stack.eventually(lambda: (j := stack.job(job_id, WEST)) and j["status"] == "COMPLETED", timeout=20)

    def snapshot() -> dict:
        with stack.http(EAST) as e, stack.http(WEST) as w:
            return {"control": stack.rf_json("control", "show")["epoch"],
                    "jobs": [e.get("/jobs").json()["jobs"], w.get("/jobs").json()["jobs"]],
                    "chunks": [e.get(f"/jobs/{job_id}/chunks").json(), w.get(f"/jobs/{job_id}/chunks").json()],
                    "objects": sorted(str(p.relative_to(stack.root)) for p in
                                      (stack.root / ".regionflow").glob("*/objects/**/*") if p.is_file())}

    before = snapshot()
    practice = stack.rf_json("failover", "--to", WEST, "--practice", timeout=60)
    assert practice["status"] == "SUCCEEDED" and practice["practice"] is True
    assert practice["rto_seconds"] is None
    assert snapshot() == before  # control, state, objects unchanged

    plan = _write_plan(stack.root / "plans" / "gated.yaml", """    - kind: manual_approval
      prompt: ok to fail over?
      timeout: 120
    - kind: routing_control
    - kind: reconcile
""")
    proc = subprocess.Popen([REGIONFLOW, "plan", "run", str(plan), "--activate", WEST, "--json"], cwd=stack.root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def waiting():
            with stack.http(WEST) as w:
                rows = w.get("/plans/executions").json()["executions"]
            return next((r for r in rows if r["plan"] == "gated" and r["status"] == "WAITING_APPROVAL"), None)

        pending = stack.eventually(waiting, timeout=30, what="the execution to wait for approval")
        assert proc.poll() is None  # still blocked
        assert stack.rf_json("control", "show")["active_region"] == EAST
        stack.rf("plan", "approve", pending["execution_id"])
        out, errs = proc.communicate(timeout=60)
        assert proc.returncode == 0, errs
        record = json.loads(out)
        assert record["status"] == "SUCCEEDED" and record["steps"][0]["output"]["approved_by"].endswith("@cli")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert stack.rf_json("control", "show")["active_region"] == WEST


@pytest.mark.parametrize(("body", "line", "reason"), [
    ("    - kind: teleport\n", 6, "unknown step kind 'teleport'"),
    ("    - kind: health_check\n      region: eu-central-1\n", 7, "unknown region 'eu-central-1'"),
])
def test_bad_plans_are_refused_with_line_and_reason(tmp_path, body, line, reason):
    plan = _write_plan(tmp_path / "bad.yaml", body)
    result = subprocess.run([REGIONFLOW, "plan", "validate", str(plan), "--offline"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert f"bad.yaml:{line}: {reason}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_workflow_for_a_missing_region_and_a_cycle_of_child_plans_are_refused(tmp_path):
    missing = tmp_path / "missing.yaml"
    missing.write_text("name: m\nregions: [us-east-1, us-west-2]\nworkflows:\n  ap-south-1:\n"
                       "    - kind: reconcile\n")
    result = subprocess.run([REGIONFLOW, "plan", "validate", str(missing), "--offline"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1 and "missing.yaml:4: workflow for unknown region 'ap-south-1'" in result.stderr
    (tmp_path / "a.yaml").write_text("name: a\nregions: [us-east-1, us-west-2]\nworkflows:\n  us-west-2:\n"
                                     "    - kind: child_plan\n      plan: b.yaml\n")
    (tmp_path / "b.yaml").write_text("name: b\nregions: [us-east-1, us-west-2]\nworkflows:\n  us-west-2:\n"
                                     "    - kind: reconcile\n    - kind: child_plan\n      plan: a.yaml\n")
    result = subprocess.run([REGIONFLOW, "plan", "validate", str(tmp_path / "a.yaml"), "--offline"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "b.yaml:7: child plans form a cycle: a.yaml -> b.yaml -> a.yaml" in result.stderr, result.stderr


def test_plan_validate_checks_the_live_stack(stack):
    # each region evaluates the failover plan by itself and status shows it
    stack.eventually(lambda: (stack.rf_json("status")["regions"][EAST].get("plan_evaluation") or {}).get("status")
                     == "ok", timeout=30, what="the continuous plan evaluation")
    plan = Path(__file__).parents[2] / "examples" / "plans" / "batch.yaml"  # a link to the built-in plan
    ok = stack.rf_json("plan", "validate", str(plan))
    assert ok["status"] == "ok" and all(c["ok"] for c in ok["checks"])
    # a copy outside the plans directory is a valid plan, but not one the regions would run
    copy = stack.root.parent / "copy.yaml"
    copy.write_text(plan.read_text())
    elsewhere = stack.rf("plan", "validate", str(copy), check=False)
    assert elsewhere.returncode == 1 and "ok   plan is valid" in elsewhere.stdout
    assert f"plans run only from the plans directory {stack.root / 'plans'}" in elsewhere.stderr
    assert "Traceback" not in elsewhere.stderr
    stack.signal(WEST, signal.SIGSTOP)
    try:
        bad = stack.rf("plan", "validate", str(plan), check=False)
        assert bad.returncode == 1 and "us-west-2 reachable" in bad.stdout
    finally:
        stack.signal(WEST, signal.SIGCONT)
