"""The fleet operations (regionflow.api.fleet) and the execution merge rule they share with the console,
against fake region clients: no servers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from regionflow.api import fleet
from regionflow.api.client import ApiError
from regionflow.config import init_project, load_config
from regionflow.errors import RegionflowError
from regionflow.switch.records import merge_executions

EAST, WEST = "us-east-1", "us-west-2"


def _rec(eid: str, region: str, status: str, started_at: float) -> dict[str, Any]:
    return {"execution_id": eid, "region": region, "status": status, "started_at": started_at}


# ---------------------------------------------------------------------------------------------------
# merge_executions
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [(EAST, WEST), (WEST, EAST)])
def test_the_copy_of_the_region_that_ran_it_wins_whatever_the_order(order):
    # e1 ran in us-west-2: its own copy has finished, the replica in us-east-1 still says RUNNING
    records = {EAST: [_rec("e1", WEST, "RUNNING", 10.0), _rec("e2", EAST, "SUCCEEDED", 20.0)],
               WEST: [_rec("e1", WEST, "SUCCEEDED", 10.0), _rec("e2", EAST, "RUNNING", 20.0)]}
    merged = merge_executions({name: records[name] for name in order})
    assert [(r["execution_id"], r["status"]) for r in merged] == [("e2", "SUCCEEDED"), ("e1", "SUCCEEDED")]


def test_merged_executions_are_newest_first_and_copies():
    mine = _rec("old", EAST, "SUCCEEDED", 1.0)
    merged = merge_executions({EAST: [mine, _rec("new", EAST, "FAILED", 3.0)],
                               WEST: [_rec("middle", WEST, "SUCCEEDED", 2.0), _rec("new", EAST, "RUNNING", 3.0)]})
    assert [r["execution_id"] for r in merged] == ["new", "middle", "old"]
    assert merged[0]["status"] == "FAILED"
    merged[-1]["status"] = "changed"
    assert mine["status"] == "SUCCEEDED"


def test_a_replica_alone_is_kept():
    assert merge_executions({EAST: [_rec("e1", WEST, "RUNNING", 1.0)], WEST: []})[0]["status"] == "RUNNING"


# ---------------------------------------------------------------------------------------------------
# fan-out over fake regions
# ---------------------------------------------------------------------------------------------------


class FakeRegion:
    """What one region answers; down=True answers nothing (ApiError as for an unreachable region)."""

    def __init__(self, name: str, *, down: bool = False, executions=(), outbox=(), faults=(), approves=False,
                 statuses=()):
        self.name, self.down = name, down
        self._executions, self._outbox, self._faults = list(executions), list(outbox), list(faults)
        self.approves = approves
        self.statuses = list(statuses)  # what run_plan, then each execution() poll, answers
        self.calls: list[tuple] = []

    def _check(self) -> None:
        if self.down:
            raise ApiError(f"{self.name} (http://x) is not reachable: ConnectError")

    def executions(self) -> list[dict]:
        self._check()
        return self._executions

    def outbox(self) -> list[dict]:
        self._check()
        return self._outbox

    def faults(self) -> list[dict]:
        self._check()
        return self._faults

    def approve(self, execution_id: str, by: str) -> dict:
        self._check()
        self.calls.append(("approve", execution_id, by))
        if not self.approves:
            raise ApiError(f"{self.name}: HTTP 409: execution {execution_id} is not waiting", 409)
        return {"execution_id": execution_id, "approved_by": by}

    def _record(self) -> dict:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return {"execution_id": "x1", "status": status}

    def run_plan(self, plan_path: str, activate: str, *, practice: bool, started_by: str) -> dict:
        self._check()
        self.calls.append(("run_plan", plan_path, activate, practice, started_by))
        return self._record()

    def execution(self, execution_id: str) -> dict:
        self._check()
        self.calls.append(("execution", execution_id))
        return self._record()


@pytest.fixture
def config(tmp_path):
    return load_config(init_project(tmp_path))


class Regions(dict):
    """The fake regions by name, and every client fleet opened: (region, admin)."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: list[tuple[str | None, bool]] = []


@pytest.fixture
def regions(monkeypatch):
    """Install fake regions: regions[name] = FakeRegion(...); fleet's clients then talk to them."""
    fakes = Regions()

    class FakeClient:
        @classmethod
        def for_config(cls, config, region=None, *, admin=False, timeout=30.0):
            fakes.opened.append((region, admin))
            return cls(fakes[region])

        def __init__(self, fake):
            self.fake = fake

        def __enter__(self):
            return self.fake

        def __exit__(self, *exc):
            return None

    monkeypatch.setattr(fleet, "ApiClient", FakeClient)
    return fakes


def test_all_executions_skips_a_region_that_does_not_answer(config, regions):
    regions[EAST] = FakeRegion(EAST, down=True)
    regions[WEST] = FakeRegion(WEST, executions=[_rec("e1", WEST, "SUCCEEDED", 5.0)])
    assert [r["execution_id"] for r in fleet.all_executions(config)] == ["e1"]


def test_approve_asks_each_region_until_one_accepts(config, regions):
    regions[EAST] = FakeRegion(EAST)
    regions[WEST] = FakeRegion(WEST, approves=True)
    assert fleet.approve_anywhere(config, "x1", "me@cli") == {"execution_id": "x1", "approved_by": "me@cli"}
    assert regions[EAST].calls == regions[WEST].calls == [("approve", "x1", "me@cli")]
    assert regions.opened == [(EAST, True), (WEST, True)]


def test_approve_in_one_region_only_or_nowhere(config, regions):
    regions[EAST] = FakeRegion(EAST, approves=True)
    regions[WEST] = FakeRegion(WEST, down=True)
    with pytest.raises(RegionflowError, match="no region is running execution x1 waiting for approval"):
        fleet.approve_anywhere(config, "x1", "me@cli", region=WEST)
    assert regions[EAST].calls == []


def test_notifications_are_tagged_with_where_they_are_stored_and_unreachable_regions_named(config, regions):
    note = {"job_id": "j1", "region": EAST}
    regions[EAST] = FakeRegion(EAST, outbox=[note])
    regions[WEST] = FakeRegion(WEST, down=True)
    rows, unreachable = fleet.all_notifications(config)
    assert rows == [{**note, "stored_in": EAST}] and unreachable == [WEST]


# ---------------------------------------------------------------------------------------------------
# notifications: one message per job from the regions' replicated records
# ---------------------------------------------------------------------------------------------------


def _note(job_id: str, sender: str, status: str = "sent", created_at: float = 1.0, **extra: Any) -> dict[str, Any]:
    return {"job_id": job_id, "region": sender, "status": status, "rows_ok": 9, "rows_rejected": 1,
            "created_at": created_at, "sent_at": created_at + 1 if status == "sent" else None, **extra}


def _stored(region: str, note: dict[str, Any]) -> dict[str, Any]:
    return {**note, "stored_in": region}


def test_one_message_recorded_by_both_regions_is_one_message():
    note = _note("j1", EAST)
    [message] = fleet.merge_notifications([_stored(EAST, note), _stored(WEST, note)])
    assert message == {**note, "regions": [EAST, WEST], "differences": {}}


@pytest.mark.parametrize("order", [(EAST, WEST), (WEST, EAST)])
def test_the_senders_record_wins_and_a_lagging_replica_shows_as_a_difference(order):
    records = {EAST: _note("j1", EAST, "sent"), WEST: _note("j1", EAST, "sending")}
    [message] = fleet.merge_notifications([_stored(r, records[r]) for r in order])
    assert message["status"] == "sent" and message["regions"] == list(order)
    assert message["differences"] == {"sent_at": {r: records[r]["sent_at"] for r in order},
                                      "status": {r: records[r]["status"] for r in order}}


def test_two_regions_that_each_sent_one_show_as_disagreeing_on_the_sender():
    [message] = fleet.merge_notifications([_stored(EAST, _note("j1", EAST)), _stored(WEST, _note("j1", WEST))])
    assert message["regions"] == [EAST, WEST] and message["differences"]["region"] == {EAST: EAST, WEST: WEST}


def test_messages_are_oldest_first_and_a_replica_alone_is_kept():
    merged = fleet.merge_notifications([_stored(EAST, _note("new", EAST, created_at=5.0)),
                                        _stored(WEST, _note("old", EAST, "sending", created_at=2.0)),
                                        _stored(WEST, _note("new", EAST, created_at=5.0))])
    assert [(m["job_id"], m["regions"], m["status"]) for m in merged] == [
        ("old", [WEST], "sending"), ("new", [EAST, WEST], "sent")]
    assert all("stored_in" not in m for m in merged)


def test_the_outbox_command_shows_messages_and_keeps_the_records_behind_a_flag(config, regions):
    regions[EAST] = FakeRegion(EAST, outbox=[_note("job-1", EAST)])
    regions[WEST] = FakeRegion(WEST, outbox=[_note("job-1", EAST, "sending")])
    args = ["outbox", "--config", str(config.source)]
    answer = json.loads(_cli(*args, "--json").stdout)
    assert [(m["job_id"], m["regions"]) for m in answer["messages"]] == [("job-1", [EAST, WEST])]
    assert answer["unreachable"] == [] and set(answer["messages"][0]["differences"]) == {"status", "sent_at"}
    human = _cli(*args).stdout.splitlines()
    [row] = [line for line in human if "job-1" in line and "│" in line]
    assert EAST in row and any(WEST in line for line in human)
    assert [line for line in human if line.startswith("job-1: ")] == [
        f"job-1: the regions' records disagree on sent_at: {EAST}=2.0, {WEST}=None; "
        f"status: {EAST}=sent, {WEST}=sending"]
    records = json.loads(_cli(*args, "--records", "--json").stdout)
    assert [(n["job_id"], n["stored_in"]) for n in records["notifications"]] == [("job-1", EAST), ("job-1", WEST)]
    assert _cli(*args, "--records").stdout.count("job-1") == 2


def test_plan_run_and_failover_refuse_a_plan_outside_the_plans_directory_before_sending(config, regions, tmp_path):
    outside = tmp_path / "outside.yaml"
    outside.write_text(Path(config.plan_path).read_text())
    for args in (["plan", "run", str(outside), "--activate", WEST], ["failover", "--to", WEST, "--plan", str(outside),
                                                                     "--practice"]):
        result = _cli(*args, "--config", str(config.source), code=1)
        assert result.stdout == "" and "Traceback" not in result.output
        assert result.stderr == (f"error: {outside}: plans run only from the plans directory {tmp_path / 'plans'} "
                                 "(or the configured plan, or a built-in plan); put the plan there, or set "
                                 "plans_dir in regionflow.toml\n")
    assert regions.opened == []


def _cli(*args: str, code: int = 0) -> Any:
    from typer.testing import CliRunner

    from regionflow.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result


def test_faults_of_every_answering_region_with_the_admin_token(config, regions):
    regions[EAST] = FakeRegion(EAST, faults=[{"id": "f1", "kind": "crash"}])
    regions[WEST] = FakeRegion(WEST, faults=[{"id": "f2", "kind": "state_slow"}])
    assert fleet.all_faults(config) == [{"id": "f1", "kind": "crash", "region": EAST},
                                        {"id": "f2", "kind": "state_slow", "region": WEST}]
    assert all(admin for _, admin in regions.opened)


# ---------------------------------------------------------------------------------------------------
# run_plan_and_wait
# ---------------------------------------------------------------------------------------------------


def test_run_plan_posts_to_the_target_and_waits_telling_once_about_approval(config, regions):
    regions[WEST] = FakeRegion(WEST, statuses=["RUNNING", "WAITING_APPROVAL", "WAITING_APPROVAL", "SUCCEEDED"])
    told: list[str] = []
    record = fleet.run_plan_and_wait(config, config.plan_path, WEST, practice=True, timeout=10,
                                     on_waiting=told.append, started_by="me@cli")
    assert record["status"] == "SUCCEEDED" and record["command_seconds"] >= 0
    assert told == ["x1"]
    kind, _path, activate, practice, by = regions[WEST].calls[0]
    assert (kind, activate, practice, by) == ("run_plan", WEST, True, "me@cli")
    assert [c[0] for c in regions[WEST].calls[1:]] == ["execution"] * 3
    assert regions.opened == [(WEST, True)]


def test_run_plan_gives_up_after_timeout_naming_the_execution(config, regions):
    regions[WEST] = FakeRegion(WEST, statuses=["RUNNING"])
    with pytest.raises(fleet.ExecutionTimeout,
                       match=r"execution x1 still RUNNING after 0.3s; see `regionflow plan show x1`"):
        fleet.run_plan_and_wait(config, config.plan_path, WEST, practice=False, timeout=0.3)


def test_run_plan_refuses_an_unknown_region_or_plan_before_posting(config, regions, tmp_path):
    with pytest.raises(RegionflowError, match="unknown region"):
        fleet.run_plan_and_wait(config, config.plan_path, "eu-west-1", practice=True, timeout=1)
    bad = tmp_path / "plans" / "bad.yaml"
    bad.write_text("name: [\n")
    with pytest.raises(RegionflowError, match="not valid YAML"):
        fleet.run_plan_and_wait(config, str(bad), WEST, practice=True, timeout=1)
    # a plan outside the plans directory: the region would refuse it, so it is not sent
    outside = tmp_path / "outside.yaml"
    outside.write_text(Path(config.plan_path).read_text())
    refused = re.escape(f"plans run only from the plans directory {tmp_path / 'plans'} ")
    with pytest.raises(RegionflowError, match=refused):
        fleet.run_plan_and_wait(config, str(outside), WEST, practice=True, timeout=1)
    assert regions.opened == []
