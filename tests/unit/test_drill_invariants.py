"""The drill's invariant checks on small hand-made states: a clean run passes, and a lost file, a duplicated
output and a row-count mismatch are each detected (and only that invariant fails)."""

from __future__ import annotations

import copy
from typing import Any

from regionflow.drill.invariants import (
    JobIndex,
    check_converged,
    check_invariants,
    check_rows,
    extra_chunk_executions,
    output_key_for,
    records_agree,
)
from regionflow.drill.loadtest import Upload
from regionflow.drill.observe import rpo_files

SHA = "f" * 64
EXPECTED = {"output_sha256": SHA, "rows_in": 5, "rows_ok": 4, "rows_rejected": 1}
EAST, WEST = "us-east-1", "us-west-2"


def job(job_id: str, name: str, **over: Any) -> dict[str, Any]:
    record = {"job_id": job_id, "input_key": f"input/{name}", "version_id": "v1", "status": "COMPLETED",
              "owner_region": EAST, "owner_epoch": 1, "rows_in": 5, "rows_ok": 4, "rows_rejected": 1,
              "output_key": f"output/completed/{name}", "output_etag": SHA, "completing_region": EAST,
              "reason": None}
    record.update(over)
    return record


def clean_run() -> dict[str, Any]:
    """Two files, each processed once, replicated to both regions, one notification each."""
    jobs = [job("j1", "one.csv"), job("j2", "two.csv")]
    region = {"jobs": jobs, "outputs": {j["output_key"]: SHA for j in jobs},
              "chunks": {j["job_id"]: [{"idx": 0, "attempts": 1}] for j in jobs},
              "rejects": {j["job_id"]: [4] for j in jobs}}
    return {"expected": dict(EXPECTED), "authoritative": EAST,
            "submitted": [{"key": "input/one.csv", "job_id": "j1"}, {"key": "input/two.csv", "job_id": "j2"}],
            "regions": {EAST: region, WEST: copy.deepcopy(region)},
            "notifications": [{"file": "j1.eml", "job_id": "j1"}, {"file": "j2.eml", "job_id": "j2"}]}


def failed_invariants(result: dict[str, Any]) -> set[str]:
    return {name for name, ok in result["invariants"].items() if not ok}


def test_a_clean_run_passes():
    result = check_invariants(clean_run())
    assert result["passed"] is True, result["violations"]
    assert result["violations"] == []
    assert (result["lost"], result["unfinished"], result["duplicated_outputs"], result["mismatched_outputs"],
            result["duplicated_notifications"], result["missing_notifications"], result["reprocessed_chunks"]) \
        == (0, 0, 0, 0, 0, 0, 0)


def test_a_lost_file_is_detected():
    state = clean_run()
    # the file's job never ran anywhere: no record, no output, no notification
    for region in state["regions"].values():
        region["jobs"] = [j for j in region["jobs"] if j["job_id"] != "j2"]
        del region["outputs"]["output/completed/two.csv"]
    state["notifications"] = [n for n in state["notifications"] if n["job_id"] != "j2"]
    result = check_invariants(state)
    assert result["passed"] is False
    assert result["lost"] == 1 and result["unfinished"] == 1 and result["missing_notifications"] == 1
    assert {"every_file_has_an_output", "every_job_completed", "one_notification_per_file"} \
        == failed_invariants(result)
    assert any(v.startswith("input/two.csv: lost: no output in us-east-1 (no job)") for v in result["violations"])
    assert "input/two.csv: its upload's job j2 is in no region" in result["violations"]


def test_a_duplicated_output_is_detected():
    state = clean_run()
    # a second job for the same file (another version of the input) completed too, with its own message
    twin = job("j1b", "one.csv", version_id="v2")
    for region in state["regions"].values():
        region["jobs"].append(copy.deepcopy(twin))
        region["chunks"]["j1b"] = [{"idx": 0, "attempts": 1}]
        region["rejects"]["j1b"] = [4]
    state["notifications"].append({"file": "j1b.eml", "job_id": "j1b"})
    result = check_invariants(state)
    assert result["passed"] is False
    assert result["duplicated_outputs"] == 1 and result["duplicated_notifications"] == 1
    assert failed_invariants(result) == {"one_output_per_file", "one_notification_per_file"}
    assert "input/one.csv: 2 completed jobs: j1, j1b" in result["violations"]


def test_a_completed_job_for_a_file_nobody_submitted_counts_as_a_duplicate():
    state = clean_run()
    stray = job("j9", "stray.csv")
    for region in state["regions"].values():
        region["jobs"].append(copy.deepcopy(stray))
        region["outputs"]["output/completed/stray.csv"] = SHA
        region["rejects"]["j9"] = [4]
    result = check_invariants(state)
    assert result["duplicated_outputs"] == 1
    assert failed_invariants(result) == {"one_output_per_file"}


def test_a_rows_mismatch_is_detected():
    state = clean_run()
    for region in state["regions"].values():
        region["jobs"][0]["rows_ok"] = 3  # 5 in, 3 ok, 1 rejected: a row went missing
    result = check_invariants(state)
    assert result["passed"] is False
    assert failed_invariants(result) == {"rows_in_equals_ok_plus_rejected", "counts_match_single_region_run"}
    assert "j1 in us-east-1: rows_in 5 != ok 3 + rejected 1" in result["violations"]
    assert "j1 in us-west-2: rows_in 5 != ok 3 + rejected 1" in result["violations"]


def test_check_rows_finds_a_reject_recorded_twice_and_a_missing_count():
    state = clean_run()
    state["regions"][WEST]["rejects"]["j2"] = [4, 4]
    state["regions"][EAST]["jobs"][1]["rows_rejected"] = None
    index = JobIndex.build(state["regions"], EAST)
    rows = check_rows(state["regions"], index, EXPECTED)
    assert not rows.rejects_once and not rows.balanced and not rows.counts_match
    assert any("rejects recorded twice for rows [4]" in v for v in rows.violations)


def test_a_mismatched_output_is_detected_in_the_region_that_holds_it():
    state = clean_run()
    state["regions"][WEST]["outputs"]["output/completed/one.csv"] = "0" * 64
    result = check_invariants(state)
    assert result["mismatched_outputs"] == 1
    assert failed_invariants(result) == {"outputs_identical_to_single_region_run"}


def test_diverged_regions_are_detected_and_the_authoritative_record_wins():
    state = clean_run()
    state["regions"][WEST]["jobs"][0]["owner_epoch"] = 2
    del state["regions"][WEST]["outputs"]["output/completed/two.csv"]
    index = JobIndex.build(state["regions"], EAST)
    assert index.union["j1"]["owner_epoch"] == 1
    converged, violations = check_converged(state["regions"], index)
    assert not converged
    assert violations == ["j1: regions disagree on owner_epoch", "j2: output output/completed/two.csv absent in "
                          "us-west-2"]
    assert not records_agree({name: {j["job_id"]: j for j in r["jobs"]} for name, r in state["regions"].items()})
    assert records_agree({EAST: {"j1": job("j1", "one.csv")}, WEST: {"j1": job("j1", "one.csv")}})
    assert not records_agree({EAST: {"j1": job("j1", "one.csv")}, WEST: {}})


def test_reprocessed_chunks_and_logged_executions():
    state = clean_run()
    state["regions"][EAST]["chunks"]["j1"] = [{"idx": 0, "attempts": 3}, {"idx": 1, "attempts": 1}]
    assert check_invariants(state)["reprocessed_chunks"] == 2
    assert extra_chunk_executions({"j1": 4, "j2": 1}, {"j1": [{}, {}], "j2": [{}]}) == 2
    assert extra_chunk_executions({}, {"j1": [{}]}) == 0


def test_output_key_for():
    assert output_key_for("input/a/b.csv") == "output/completed/a/b.csv"
    assert output_key_for("elsewhere/c.csv") == "output/completed/c.csv"


def test_rpo_files_counts_what_the_standby_lacked_at_the_switch():
    uploads = [Upload(0, "input/a.csv", submitted_at=10.0, job_id="ja"),
               Upload(1, "input/b.csv", submitted_at=11.0, job_id="jb"),
               Upload(2, "input/c.csv", submitted_at=12.0, job_id="jc"),
               Upload(3, "input/d.csv", submitted_at=30.0, job_id="jd")]  # after the switch: not at risk
    failover = {"started_at": 20.0, "missing": [{"job_id": "jc"}]}
    rpo = rpo_files(failover, uploads, ["ja", "jc", "jd"])
    assert rpo == {"files": 2, "jobs": ["jb", "jc"], "unknown_to_standby": 1, "missing_objects": 1,
                   "submitted_before_switch": 3, "upload_mode": None, "unconfirmed_uploads": 3,
                   "at_risk_but_confirmed": []}


def test_rpo_files_tells_sync_uploads_the_standby_confirmed_from_those_it_did_not():
    sync = {"mode": "sync", "confirmed_by": ["us-west-2"]}
    fallback = {"mode": "sync", "confirmed_by": [], "not_confirmed_by": ["us-west-2"]}
    uploads = [Upload(0, "input/a.csv", submitted_at=10.0, job_id="ja", region="us-east-1", replication=sync),
               Upload(1, "input/b.csv", submitted_at=11.0, job_id="jb", region="us-east-1", replication=fallback),
               Upload(2, "input/c.csv", submitted_at=12.0, job_id="jc", region="us-west-2",
                      replication={"mode": "sync", "confirmed_by": ["us-east-1"]}),
               Upload(3, "input/d.csv", submitted_at=13.0, job_id="jd", region="us-west-2",  # found after a
                      replication={"mode": "found after a failed forward"})]  # failed forward: the standby has it
    rpo = rpo_files({"started_at": 20.0, "missing": []}, uploads, ["ja", "jc", "jd"], "us-west-2")
    assert rpo["files"] == 1 and rpo["jobs"] == ["jb"]
    assert rpo["upload_mode"] == "sync" and rpo["unconfirmed_uploads"] == 1
    assert rpo["at_risk_but_confirmed"] == []  # the one lost was acknowledged without the standby
