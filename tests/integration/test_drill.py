"""DR drills (each scenario end to end, with real region processes), the drill and loadtest commands, and the
invariant checker on fabricated states."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regionflow.cli.drill import register
from regionflow.drill import check_invariants, percentile, render_markdown, run_drill

SHA = "a" * 64
EXPECTED = {"output_sha256": SHA, "rows_in": 10, "rows_ok": 8, "rows_rejected": 2}


def _cli():
    """The regionflow CLI with the drill commands (registered here unless the CLI already has them)."""
    from regionflow.cli import app

    if not any(c.name == "drill" for c in app.registered_commands):
        register(app)
    return app


def _lines(report: dict) -> str:
    return "\n".join([f"error: {report.get('error')}", *report.get("violations", [])[:20],
                      *(e["event"] for e in report.get("timeline", []))])


# ---------------------------------------------------------------------------------------------------
# Each scenario end to end
# ---------------------------------------------------------------------------------------------------


@pytest.mark.timeout(420)
@pytest.mark.parametrize("scenario", ["kill", "storage-outage", "replication-pause"])
def test_drill_loses_nothing_and_duplicates_nothing(scenario, tmp_path):
    report = run_drill(8, scenario, report_dir=tmp_path / "reports", rows=1000, timeout=360)
    why = _lines(report)
    assert report["lost"] == 0, why
    assert report["duplicated_outputs"] == 0, why
    assert report["duplicated_notifications"] == 0, why
    assert report["missing_notifications"] == 0, why
    assert report["passed"] is True, why
    assert all(report["invariants"].values()), report["invariants"]
    assert report["submitted"] == report["files"] == 8
    assert 0 < report["rto_seconds"]["failover"] < 5.0, report["rto_seconds"]
    assert report["rto_seconds"]["failback"] > 0
    assert report["rpo"]["files"] is not None and report["rpo"]["seconds"] is not None
    # RPO 0 for inputs in sync mode: only an upload acknowledged without the standby's confirmation (it did
    # not answer within the bound, or its replication was paused) may be missing at the switch.
    assert report["rpo"]["upload_mode"] == "sync", report["rpo"]
    assert report["rpo"]["at_risk_but_confirmed"] == [], report["rpo"]
    assert report["reprocessed_chunks"] >= 0
    paths = report["paths"]
    on_disk = json.loads(Path(paths["report_json"]).read_text())
    assert on_disk["scenario"] == scenario and on_disk["passed"] is True
    markdown = Path(paths["report_markdown"]).read_text()
    assert markdown.startswith(f"# regionflow DR drill: {scenario} - PASSED")
    assert "RTO failover" in markdown and "RPO files" in markdown
    assert paths["workdir"] is None  # removed after a drill that passed


@pytest.mark.timeout(300)
def test_drill_command_exits_0_and_prints_the_report_as_json(tmp_path):
    result = CliRunner().invoke(_cli(), ["drill", "--files", "2", "--rows", "300", "--scenario", "kill",
                                         "--report", str(tmp_path / "r"), "--json", "--timeout", "240"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for field in ("scenario", "files", "rto_seconds", "rpo", "lost", "duplicated_outputs", "duplicated_notifications",
                  "reprocessed_chunks", "invariants", "passed", "paths"):
        assert field in report, field
    assert report["passed"] is True and report["lost"] == 0 and report["files"] == 2
    assert Path(report["paths"]["report_markdown"]).is_file()


@pytest.mark.timeout(60)
def test_drill_command_exits_1_when_an_invariant_fails(monkeypatch, tmp_path):
    import regionflow.drill.scenario as drill_module

    checked = check_invariants(_state(emls=["job-a", "job-a-dup"], extra_jobs=[
        {**_job("job-a-dup", "input/a.csv"), "version_id": "v2"}]))
    assert checked["passed"] is False

    def fake_run_drill(files, scenario, **kwargs):
        return {"scenario": scenario, "files": files, "rows_per_file": 10, "seconds": 1.0, "submitted": files,
                "rto_seconds": {"failover": 1.0, "failback": 1.0}, "rpo": {"files": 0, "seconds": 0.0},
                "chunk_executions_beyond_one": 0, "paths": {}, "error": None,
                **{k: checked[k] for k in ("lost", "unfinished", "duplicated_outputs", "duplicated_notifications",
                                           "reprocessed_chunks", "invariants", "violations", "passed")}}

    monkeypatch.setattr(drill_module, "run_drill", fake_run_drill)
    result = CliRunner().invoke(_cli(), ["drill", "--files", "2", "--json", "--report", str(tmp_path)])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is False and report["duplicated_notifications"] == 1
    plain = CliRunner().invoke(_cli(), ["drill", "--files", "2", "--report", str(tmp_path)])
    assert plain.exit_code == 1 and "FAILED" in plain.stdout


# ---------------------------------------------------------------------------------------------------
# Load test against a running stack
# ---------------------------------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_loadtest_reports_throughput_and_ordered_percentiles(stack):
    result = CliRunner().invoke(_cli(), ["loadtest", "--config", str(stack.root / "regionflow.toml"), "--files",
                                         "12", "--rows", "500", "--concurrency", "3", "--interval", "0.02",
                                         "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert r["files"] == r["submitted"] == r["completed"] == 12 and r["failed"] == 0
    assert r["rows_per_file"] == 500
    lat = r["latency_seconds"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert r["seconds"] > 0 and r["files_per_second"] > 0
    assert r["rows_per_second"] == pytest.approx(r["files_per_second"] * 500, rel=0.01)
    with stack.http() as ap:
        everything = ap.get("/jobs", params={"limit": 1000}).json()["jobs"]
        jobs = ap.get("/jobs", params={"limit": 1000, "prefix": r["key_prefix"]}).json()["jobs"]
    # the access point passes the prefix on: the region lists the run's jobs only, as the loader follows them
    assert jobs == [j for j in everything if j["input_key"].startswith(r["key_prefix"])]
    assert len(jobs) == 12 and len({j["input_key"] for j in jobs}) == 12
    assert all(j["status"] == "COMPLETED" and j["rows_in"] == j["rows_ok"] + j["rows_rejected"] == 500 for j in jobs)


# ---------------------------------------------------------------------------------------------------
# The invariant checker on fabricated states
# ---------------------------------------------------------------------------------------------------


def _job(job_id: str, key: str, **over) -> dict:
    job = {"job_id": job_id, "input_key": key, "version_id": "v1", "status": "COMPLETED",
           "owner_region": "us-east-1", "owner_epoch": 3, "rows_in": 10, "rows_ok": 8, "rows_rejected": 2,
           "output_key": f"output/completed/{key.removeprefix('input/')}", "output_etag": SHA,
           "completing_region": "us-west-2", "reason": None}
    job.update(over)
    return job


def _state(emls: list[str] | None = None, extra_jobs: list[dict] | None = None) -> dict:
    """Two files, both done once, replicated to both regions, one notification each."""
    jobs = [_job("job-a", "input/a.csv"), _job("job-b", "input/b.csv"), *(extra_jobs or [])]
    region = {"jobs": jobs,
              "outputs": {j["output_key"]: SHA for j in jobs},
              "chunks": {j["job_id"]: [{"idx": 0, "attempts": 1}, {"idx": 1, "attempts": 2}] for j in jobs},
              "rejects": {j["job_id"]: [3, 7] for j in jobs}}
    return {"expected": dict(EXPECTED), "authoritative": "us-east-1",
            "submitted": [{"key": "input/a.csv", "job_id": "job-a"}, {"key": "input/b.csv", "job_id": "job-b"}],
            "regions": {"us-east-1": region, "us-west-2": copy.deepcopy(region)},
            "notifications": [{"file": f"{j}.eml", "job_id": j} for j in (emls or ["job-a", "job-b"])]}


@pytest.mark.timeout(10)
def test_a_consistent_state_passes():
    r = check_invariants(_state())
    assert r["passed"] is True, r["violations"]
    assert (r["lost"], r["duplicated_outputs"], r["duplicated_notifications"]) == (0, 0, 0)
    assert r["reprocessed_chunks"] == 2  # one chunk of each job ran twice


@pytest.mark.timeout(10)
def test_a_duplicated_notification_fails():
    r = check_invariants(_state(emls=["job-a", "job-b", "job-b2"],
                                extra_jobs=[_job("job-b2", "input/b.csv", version_id="v2")]))
    assert r["passed"] is False
    assert r["duplicated_notifications"] == 1 and r["duplicated_outputs"] == 1
    assert not r["invariants"]["one_notification_per_file"] and not r["invariants"]["one_output_per_file"]


@pytest.mark.timeout(10)
def test_a_mismatched_output_and_a_lost_file_fail():
    state = _state(emls=["job-a"])
    state["regions"]["us-west-2"]["outputs"]["output/completed/a.csv"] = "b" * 64
    for region in state["regions"].values():
        region["jobs"][1] = _job("job-b", "input/b.csv", status="FAILED", output_key=None, output_etag=None,
                                 reason="chunk 0 failed 3 times")
        region["outputs"]["output/completed/b.csv"] = None
    r = check_invariants(state)
    assert r["passed"] is False
    assert r["lost"] == 1 and r["unfinished"] == 1 and r["missing_notifications"] == 1
    assert r["mismatched_outputs"] == 1
    assert not r["invariants"]["outputs_identical_to_single_region_run"]
    assert not r["invariants"]["every_file_has_an_output"] and not r["invariants"]["every_job_completed"]
    assert any("chunk 0 failed 3 times" in v for v in r["violations"])


@pytest.mark.timeout(10)
def test_a_job_stuck_although_its_output_and_notification_exist_fails():
    # what a stale region's late archive (the input deleted under the new owner) leaves behind
    state = _state()
    for region in state["regions"].values():
        region["jobs"][0] = _job("job-a", "input/a.csv", status="INITIALIZED", owner_epoch=3, rows_in=None,
                                 rows_ok=None, rows_rejected=None, output_key=None, output_etag=None,
                                 completing_region=None)
        region["rejects"]["job-a"] = []
    r = check_invariants(state)
    assert r["lost"] == 0 and r["unfinished"] == 1 and r["passed"] is False
    assert not r["invariants"]["every_job_completed"] and r["invariants"]["regions_converged"]
    assert any("input/a.csv: no job completed in us-east-1: job-a INITIALIZED (owner us-east-1 epoch 3)" in v
               for v in r["violations"]), r["violations"]


@pytest.mark.timeout(10)
def test_rejects_twice_unbalanced_rows_and_diverged_regions_fail():
    state = _state()
    east, west = state["regions"]["us-east-1"], state["regions"]["us-west-2"]
    east["rejects"]["job-a"] = [3, 3]
    west["jobs"][1] = _job("job-b", "input/b.csv", rows_ok=9)
    r = check_invariants(state)
    inv = r["invariants"]
    assert not inv["no_reject_recorded_twice"]
    assert not inv["rows_in_equals_ok_plus_rejected"] and not inv["counts_match_single_region_run"]
    assert not inv["regions_converged"]
    assert r["lost"] == 0 and r["passed"] is False
    # the report renders whatever failed
    md = render_markdown({"scenario": "kill", "files": 2, "passed": False, "invariants": inv,
                          "violations": r["violations"], "rto_seconds": {}, "rpo": {}, "paths": {}})
    assert "**FAILED**" in md and "rejects recorded twice" in md


@pytest.mark.timeout(10)
def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50.0, 95.0, 99.0)
    assert percentile([3.0], 99) == 3.0 and percentile([], 50) is None
