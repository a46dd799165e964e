"""The chaos experiments of examples/chaos/, each run with Chaos Toolkit against a fresh two-region stack:
the steady-state hypothesis (every upload completes, nothing twice) holds before, after the method, and
again after the rollbacks."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from regionflow.chaos.runner import ExperimentError, load_experiment, run_experiment
from stackkit import EAST
from testenv import REGIONFLOW

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "chaos"
EXPERIMENTS = ["storage-outage.json", "state-outage.json", "replication-pause.json", "killed-mid-merge.json",
               "control-unreachable-during-failover.json", "stale-region.json"]


def _failed(activities: list[dict]) -> list[str]:
    return [f"{a['name']}: {a.get('error') or a['status']}" for a in activities if a["status"] != "succeeded"]


def _unmet(probes: list[dict] | None) -> list[str]:
    return ["no hypothesis was checked"] if not probes else [p["name"] for p in probes if not p["tolerance_met"]]


def test_every_example_is_a_chaos_toolkit_experiment_with_the_hypothesis_and_rollbacks():
    assert sorted(p.name for p in EXAMPLES.glob("*.json")) == sorted(EXPERIMENTS)
    for name in EXPERIMENTS:
        exp = load_experiment(EXAMPLES / name)
        assert exp["title"] and exp["description"] and exp["tags"], name
        assert exp["configuration"]["regionflow_config"] == {"type": "env", "key": "REGIONFLOW_CONFIG"}, name
        probes = {p["provider"]["func"]: p["tolerance"] for p in exp["steady-state-hypothesis"]["probes"]}
        assert probes == {"all_jobs_complete": True, "no_duplicates": True}, name
        assert exp["rollbacks"], name
        for activity in [*exp["method"], *exp["rollbacks"], *exp["steady-state-hypothesis"]["probes"]]:
            assert activity["provider"]["module"] in ("regionflow.chaos.actions", "regionflow.chaos.probes"), (
                name, activity["name"])
            assert activity["provider"]["arguments"]["config_path"] == "${regionflow_config}"
        validate = subprocess.run([str(Path(REGIONFLOW).parent / "chaos"), "--no-version-check", "--no-log-file",
                                   "validate", str(EXAMPLES / name)], capture_output=True, text=True, timeout=60,
                                  env={**os.environ, "REGIONFLOW_CONFIG": "/nonexistent/regionflow.toml"})
        assert validate.returncode == 0, (name, validate.stderr[-2000:])


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_holds_its_hypothesis_after_the_rollbacks(stack, tmp_path, name):
    journal = tmp_path / "journal.json"
    summary = run_experiment(EXAMPLES / name, stack.root / "regionflow.toml", journal, timeout=200)
    where = f"{name}: journal {journal}, log {journal.with_suffix('.log')}"
    assert summary["status"] == "completed", where
    assert not summary["deviated"], (_unmet(summary["steady_state_after"]), where)
    assert not _unmet(summary["steady_state_before"]), where
    assert not _unmet(summary["steady_state_after"]), where
    assert not _failed(summary["method"]), (_failed(summary["method"]), where)
    assert not _failed(summary["rollbacks"]), (_failed(summary["rollbacks"]), where)
    assert summary["recovered"] and not _unmet(summary["steady_state_after_rollbacks"]), where
    # the rollbacks left the primary active and every process running
    assert stack.rf_json("control", "show")["active_region"] == EAST
    assert set(stack.rf_json("status")["processes"]) == {EAST, "us-west-2", "access-point"}
    assert json.loads(journal.read_text())["status"] == "completed"


def test_chaos_run_cli_reports_a_missing_file_and_bad_json_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from regionflow.cli.chaos import chaos_app

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    runner = CliRunner()
    for path, message in ((tmp_path / "absent.json", "no such file"), (bad, "not valid JSON")):
        result = runner.invoke(chaos_app, ["run", str(path), "--config", str(tmp_path / "regionflow.toml")])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    with pytest.raises(ExperimentError, match="not a Chaos Toolkit experiment"):
        (tmp_path / "list.json").write_text("[]")
        load_experiment(tmp_path / "list.json")
