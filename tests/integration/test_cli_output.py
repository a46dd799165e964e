"""The CLI's output helper (regionflow.cli.output) and the JSON and human output of commands: in-process
with CliRunner where no stack is needed, through the console script against a real stack otherwise."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from regionflow.cli import app
from regionflow.cli.output import call, emit, fail
from regionflow.errors import RegionflowError
from stackkit import EAST, WEST

runner = CliRunner()


def _helper_app() -> typer.Typer:
    """A tiny app driving the helpers the way the commands do."""
    helpers = typer.Typer()

    @helpers.command()
    def show(as_json: bool = typer.Option(False, "--json"), broken: bool = False, usage: bool = False) -> None:
        if usage:
            fail("bad usage")

        def refuse() -> dict:
            raise RegionflowError("the region said no")

        data = call(refuse) if broken else {"n": 1, "when": object.__name__}
        emit(data, as_json, lambda d: typer.echo(f"n is {d['n']}"))

    return helpers


def test_emit_prints_json_or_calls_render():
    helpers = _helper_app()
    human = runner.invoke(helpers, [])
    assert human.exit_code == 0 and human.stdout == "n is 1\n"
    machine = runner.invoke(helpers, ["--json"])
    assert machine.exit_code == 0 and json.loads(machine.stdout) == {"n": 1, "when": "object"}


def test_call_turns_a_regionflow_error_into_one_line_and_exit_1_and_fail_exits_2():
    helpers = _helper_app()
    broken = runner.invoke(helpers, ["--broken", "--json"])
    assert broken.exit_code == 1 and broken.stdout == ""
    assert broken.stderr.strip() == "error: the region said no"
    usage = runner.invoke(helpers, ["--usage"])
    assert usage.exit_code == 2 and usage.stderr.strip() == "error: bad usage"


def test_every_group_has_help():
    for args in ([], ["pipeline"], ["control"], ["replication"], ["reference"], ["plan"], ["fault"], ["chaos"]):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)
        assert "Usage:" in result.stdout


def test_a_missing_topology_is_one_line_and_exit_2(tmp_path):
    for args in (["status"], ["outbox", "--json"], ["plan", "executions", "--json"], ["fault", "list"],
                 ["replication", "pause", "--from", EAST, "--to", WEST, "--json"]):
        result = runner.invoke(app, [*args, "--config", str(tmp_path / "absent.toml")])
        assert result.exit_code == 2, (args, result.output)
        assert result.stdout == "" and result.stderr.startswith("error: ") and "Traceback" not in result.output


def test_pipeline_validate_json_on_a_broken_spec(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 3\n")
    result = runner.invoke(app, ["pipeline", "validate", str(bad), "--json"])
    assert result.exit_code == 1
    answer = json.loads(result.stdout)
    assert answer["valid"] is False and answer["error"]


def test_fault_param_must_be_key_value(tmp_path):
    result = runner.invoke(app, ["fault", "inject", EAST, "state_slow", "--param", "delay",
                                 "--config", str(tmp_path / "absent.toml")])
    assert result.exit_code == 2 and "expected key=value" in result.stderr


def test_an_old_secrets_file_names_the_upgrade_and_init_upgrade_secrets_adds_only_what_is_missing(tmp_path):
    from regionflow.config import init_project, load_config, load_secrets

    config = load_config(init_project(tmp_path))
    secrets_file = tmp_path / ".regionflow" / "secrets.toml"
    old = "\n".join(line for line in secrets_file.read_text().splitlines()
                    if not line.startswith("replication_token")) + "\n"
    secrets_file.write_text(old)
    toml_before = (tmp_path / "regionflow.toml").read_text()
    refused = runner.invoke(app, ["outbox", "--json", "--config", str(tmp_path / "regionflow.toml")])
    assert refused.exit_code == 2 and refused.stdout == "" and "Traceback" not in refused.output
    assert "no replication_token" in refused.stderr and "regionflow init --upgrade-secrets" in refused.stderr
    upgraded = runner.invoke(app, ["init", "--upgrade-secrets", "--dir", str(tmp_path), "--json"])
    assert upgraded.exit_code == 0, upgraded.output
    assert json.loads(upgraded.stdout)["added"] == ["replication_token"]
    assert secrets_file.read_text().startswith(old) and load_secrets(config).replication_token
    assert (tmp_path / "regionflow.toml").read_text() == toml_before
    again = runner.invoke(app, ["init", "--upgrade-secrets", "--dir", str(tmp_path)])
    assert again.exit_code == 0 and "nothing changed" in again.stdout


@pytest.mark.timeout(240)
def test_replication_pause_and_resume_print_valid_json_and_a_line_for_people(stack):
    paused = stack.rf_json("replication", "pause", "--from", EAST, "--to", WEST, "--kind", "objects")
    assert paused["paused"] is True and paused["paused_kinds"] == ["objects"]
    assert set(paused["backlog"]) >= {"objects", "state"}
    assert stack.replication(WEST)[EAST]["paused"] is True

    human = stack.rf("replication", "resume", "--from", EAST, "--to", WEST)
    assert human.stdout.startswith(f"replication {EAST} -> {WEST}: running, backlog ")
    both = stack.rf_json("replication", "pause", "--from", EAST, "--to", WEST)
    assert both["paused"] is True and sorted(both["paused_kinds"]) == ["objects", "state"]
    assert stack.rf_json("replication", "resume", "--from", EAST, "--to", WEST)["paused"] is False

    # the other fan-out commands keep their JSON shapes
    assert stack.rf_json("fault", "clear", EAST) == {"region": EAST, "cleared": []}
    assert stack.rf_json("fault", "list") == []
    assert stack.rf_json("outbox") == {"messages": [], "unreachable": []}
    assert stack.rf_json("outbox", "--records") == {"notifications": [], "unreachable": []}
    assert stack.rf_json("plan", "executions") == []
    missing = stack.rf("plan", "approve", "nope", check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: no region is running execution nope waiting for approval"
