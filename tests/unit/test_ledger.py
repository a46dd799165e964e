"""The ledger's pure parts: its config, the nodes a topology runs, amounts, the secret file, plan names,
and the drill's invariants."""

from __future__ import annotations

import re
import stat
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regionflow.config import init_project, load_config, load_secrets
from regionflow.config.plans import builtin_plans_dir, plan_by_name
from regionflow.drill.ledger import _invariants, _longest_gap_after
from regionflow.errors import ConfigError
from regionflow.region.gateway.ledger import parse_amount
from regionflow.servers.topology import ledger_nodes, topology_servers
from regionflow.switch.plan import load_plan
from regionflow.workloads.ledger.load import LoadResult, account_ids
from regionflow.workloads.ledger.secret import LedgerSecret, SecretWatcher, read_secret, secret_path, write_secret
from regionflow.workloads.registry import step_registry


def _ledger_project(tmp_path: Path) -> Path:
    return init_project(tmp_path, ledger=True)


def test_init_ledger_writes_a_ledger_table_and_its_password(tmp_path: Path) -> None:
    cfg = load_config(_ledger_project(tmp_path))
    assert cfg.ledger is not None and not cfg.ledger.synchronous
    assert set(cfg.ledger.ports) == {"us-east-1", "us-west-2"}
    used = {cfg.access_point.port} | {p for r in cfg.regions for p in r.ports_in_use()}
    assert not used & set(cfg.ledger.ports.values())
    secrets = load_secrets(cfg)
    assert secrets.ledger_password and secrets.postgres_password is None  # the batch side stays embedded
    assert stat.S_IMODE(Path(cfg.secrets_file).stat().st_mode) == 0o600
    assert load_config(init_project(tmp_path / "plain")).ledger is None


def test_init_ledger_over_an_existing_project_keeps_its_tokens(tmp_path: Path) -> None:
    before = load_secrets(load_config(init_project(tmp_path)))
    after = load_secrets(load_config(init_project(tmp_path, force=True, ledger=True)))
    assert after.api_token == before.api_token and after.ledger_password


@pytest.mark.parametrize(("pattern", "replacement", "message"), [
    (r'^"us-west-2" = \d+$', "", "one port per region"),
    (r'^"us-west-2" = \d+$', '"us-west-2" = 0', "not a port"),
])
def test_bad_ledger_tables_are_refused(tmp_path: Path, pattern: str, replacement: str, message: str) -> None:
    path = _ledger_project(tmp_path)
    text, n = re.subn(pattern, replacement, path.read_text(), flags=re.MULTILINE)
    assert n == 1
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_a_ledger_port_used_twice_is_refused(tmp_path: Path) -> None:
    path = _ledger_project(tmp_path)
    cfg = load_config(path)
    text = re.sub(r'^"us-west-2" = \d+$', f'"us-west-2" = {cfg.regions[0].port}', path.read_text(), flags=re.M)
    path.write_text(text)
    with pytest.raises(ConfigError, match="already used by region us-east-1"):
        load_config(path)


def test_the_secret_names_the_primary_the_nodes_start_from(tmp_path: Path) -> None:
    cfg = load_config(_ledger_project(tmp_path))
    secrets = load_secrets(cfg)
    nodes = ledger_nodes(cfg, secrets)
    east, west = nodes["us-east-1"], nodes["us-west-2"]
    assert east.upstream_port is None and not east.initialized
    assert west.upstream_port == east.port and west.start_after() == ("us-east-1-ledger-db",)
    assert [s.name for s in topology_servers(cfg, secrets)] == ["us-east-1-ledger-db", "us-west-2-ledger-db"]
    # After a failover the secret names us-west-2: a rebuilt us-east-1 would be copied from it.
    write_secret(secret_path(cfg.data_dir), LedgerSecret(version=3, primary_region="us-west-2", host="127.0.0.1",
                                                         port=west.port, user="ledger_app_3", password="p" * 20))
    nodes = ledger_nodes(cfg, secrets)
    assert nodes["us-west-2"].upstream_port is None and nodes["us-east-1"].upstream_port == west.port
    assert nodes["us-west-2"].initialized
    with pytest.raises(Exception, match="not recreated empty"):
        nodes["us-west-2"].prepare()  # no data directory, and the ledger exists: refuse an empty primary


def test_the_secret_file_is_private_replaced_whole_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "ledger" / "secret.json"
    watcher = SecretWatcher(path)
    assert watcher.current() is None and read_secret(path) is None
    one = LedgerSecret(version=1, primary_region="us-east-1", host="127.0.0.1", port=5000, user="ledger_app_1",
                       password="x" * 24)
    write_secret(path, one)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert watcher.current() == one
    two = one.model_copy(update={"version": 2, "user": "ledger_app_2", "password": "y" * 24})
    write_secret(path, two)
    assert watcher.current() == two
    assert [p.name for p in path.parent.iterdir()] == ["secret.json"]  # no temporary file left behind
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not a ledger secret"):
        read_secret(path)


@pytest.mark.parametrize(("text", "expected"), [("12.50", Decimal("12.50")), ("1", Decimal("1.00")),
                                                ("0.01", Decimal("0.01")), ("999999999999.99", None)])
def test_amounts_are_exact_decimals(text: str, expected: Decimal | None) -> None:
    assert parse_amount(text) == (expected if expected is not None else Decimal(text))


@pytest.mark.parametrize("text", ["0", "-1", "1.001", "abc", "NaN", "Infinity", "1e3000", "1000000000000", ""])
def test_bad_amounts_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError):
        parse_amount(text)


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("999999999"), places=2))
def test_every_two_decimal_amount_round_trips(amount: Decimal) -> None:
    assert parse_amount(str(amount)) == amount


def test_plans_are_found_by_name(tmp_path: Path) -> None:
    cfg = load_config(_ledger_project(tmp_path))
    assert plan_by_name(cfg, "ledger") == builtin_plans_dir() / "ledger.yaml"
    own = Path(cfg.plans_dir) / "ledger.yaml"
    own.write_text((builtin_plans_dir() / "ledger.yaml").read_text())
    assert plan_by_name(cfg, "ledger") == own  # the project's own plan comes first
    assert plan_by_name(cfg, "plans/x.yaml") == Path("plans/x.yaml")
    with pytest.raises(ConfigError, match="no plan named 'nope'.*batch.*ledger"):
        plan_by_name(cfg, "nope")


def test_a_ledger_topology_fails_over_with_the_ledger_plan_by_default(tmp_path: Path) -> None:
    assert Path(load_config(_ledger_project(tmp_path)).plan_path) == builtin_plans_dir() / "ledger.yaml"
    assert Path(load_config(init_project(tmp_path / "plain")).plan_path) == builtin_plans_dir() / "batch.yaml"


def test_the_ledger_plan_uses_the_database_steps_both_ways() -> None:
    plan = load_plan(str(builtin_plans_dir() / "ledger.yaml"), step_registry())
    kinds = {region: [s.kind for s in plan.workflow(region)] for region in ("us-west-2", "us-east-1")}
    assert kinds["us-west-2"].index("database_failover") < kinds["us-west-2"].index("rotate_secret") < \
        kinds["us-west-2"].index("routing_control")
    assert "database_switchover" in kinds["us-east-1"] and "database_failover" not in kinds["us-east-1"]
    example = Path(__file__).parents[2] / "examples" / "plans" / "ledger.yaml"
    assert example.read_text() == (builtin_plans_dir() / "ledger.yaml").read_text()


def _transfer(tid: str, key: str | None = None) -> dict:
    return {"transfer_id": tid, "idempotency_key": key or f"k-{tid}", "amount": "1.00"}


def _audit(transfers: list[dict], total: str = "100.00", region: str = "us-east-1") -> dict:
    return {"region": region, "transfers": transfers, "total_balance": total}


def test_drill_invariants_hold_for_a_clean_run_and_catch_each_violation() -> None:
    load = LoadResult(requested=3, acknowledged=3)
    acks = [{"transfer_id": t} for t in ("a", "b", "c")]
    final = _audit([_transfer("a"), _transfer("b")])
    missing = {"transfers": [{"transfer_id": "c", "reapply_result": None}]}
    checks, violations = _invariants(acks, final, _audit(final["transfers"], region="us-west-2"), missing,
                                     Decimal("100.00"), load)
    assert all(checks.values()) and violations == []

    lost, _ = _invariants(acks, final, final, {"transfers": []}, Decimal("100.00"), load)
    assert not lost["every_acknowledged_transfer_on_primary_or_reported_missing"]
    twice, _ = _invariants(acks[:2], _audit([_transfer("a"), _transfer("b", key="k-a")]), final, missing,
                           Decimal("100.00"), LoadResult(requested=2, acknowledged=2))
    assert not twice["no_transfer_twice"]
    money, _ = _invariants(acks, final, final, missing, Decimal("99.00"), load)
    assert not money["total_balance_conserved"]
    unaccounted, _ = _invariants(acks, final, final, missing, Decimal("100.00"), LoadResult(requested=4,
                                                                                           acknowledged=3))
    assert not unaccounted["every_transfer_accounted_for"]
    behind, _ = _invariants(acks, final, _audit([_transfer("a")]), missing, Decimal("100.00"), load)
    assert not behind["standby_equals_primary_after_failback"]


def test_the_write_outage_is_the_longest_gap_after_the_kill() -> None:
    acks = [{"acked_at": t} for t in (1.0, 10.5, 11.0, 14.0, 14.1)]
    assert _longest_gap_after(acks, 10.0) == 3.0
    assert _longest_gap_after(acks, 20.0) is None


def test_account_ids_sort_in_order() -> None:
    ids = account_ids(12000)
    assert ids[0] == "acct-00001" and ids == sorted(ids) and len(set(ids)) == 12000


def test_the_console_reads_the_ledger_metrics_of_a_region() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from regionflow.console.app import parse_metrics
    from regionflow.workloads.ledger.metrics import LedgerMetrics

    registry = CollectorRegistry()
    metrics = LedgerMetrics(registry)
    metrics.observe("created", 0.004)
    metrics.observe("created", 0.006)
    metrics.observe("repeated", 0.001)
    metrics.canary.labels("succeeded").inc()
    metrics.replay_lag.set(0.25)
    values = parse_metrics(generate_latest(registry).decode())
    assert values["ledger_transfers"] == 2 and values["ledger_commit_ms_avg"] == 5.0
    assert values["ledger_canary_succeeded"] == 1 and values["ledger_canary_failed"] == 0
    assert values["ledger_replay_lag_seconds"] == 0.25
    assert parse_metrics("")["ledger_commit_ms_avg"] == 0.0  # a region without the ledger
