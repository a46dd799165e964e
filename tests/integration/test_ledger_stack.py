"""The ledger on a real two-region stack (`init --ledger`): its API, a failover with the primary SIGKILLed
under load, the missing-transaction report, re-apply, failback by switchover with zero loss, secret
rotation, and the drill. Every PostgreSQL node is started by `regionflow up` as the tests' own."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest
from test_servers import servers_root  # noqa: F401  (the fixture: a root the postgres user can enter)

from regionflow.polling import poll_until
from regionflow.region.stack import kill_region
from regionflow.servers.topology import ledger_nodes
from regionflow.workloads.ledger.load import account_ids, read_acks, run_load
from regionflow.workloads.ledger.secret import read_secret, secret_path
from stackkit import EAST, WEST, Stack, running_stack
from testenv import REGIONFLOW

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

ACCOUNTS, BALANCE = 20, Decimal("1000.00")
WAIT = 60.0


def _seed(stack: Stack) -> None:
    out = stack.rf_json("ledger", "seed", "--accounts", str(ACCOUNTS), "--balance", str(BALANCE))
    assert out["created"] == ACCOUNTS


def _transfer(h: httpx.Client, src: str, dst: str, amount: str, key: str | None = None) -> httpx.Response:
    return h.post("/ledger/api/transfers", json={"from": src, "to": dst, "amount": amount,
                                                 "idempotency_key": key or str(uuid.uuid4())})


def _audit(stack: Stack, region: str | None = None) -> dict:
    with stack.http(region) as h:
        resp = h.get("/ledger/api/audit")
    assert resp.status_code == 200, resp.text
    return resp.json()


def _client_factory(stack: Stack):
    return lambda: stack.http(timeout=10)


def _scalar(node, statement: str, dbname: str = "postgres"):
    with node.connect(dbname) as conn:
        return conn.execute(statement).fetchone()[0]


def _tcp_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_transfers_are_one_transaction_idempotent_and_only_on_the_primary(servers_root):  # noqa: F811
    with running_stack(servers_root, init_args=("--ledger",)) as stack:
        _seed(stack)
        a, b = account_ids(ACCOUNTS)[:2]
        with stack.http() as h:
            first = _transfer(h, a, b, "12.50", key="k-1")
            assert first.status_code == 201, first.text
            made = first.json()
            assert made["region"] == EAST and made["amount"] == "12.50" and made["committed_at"]
            again = _transfer(h, a, b, "12.50", key="k-1")
            assert again.status_code == 200 and again.json()["transfer_id"] == made["transfer_id"]
            assert _transfer(h, a, b, "13.00", key="k-1").status_code == 409
            overdraw = _transfer(h, a, b, "5000.00")
            assert overdraw.status_code == 422 and "insufficient funds" in overdraw.json()["detail"]
            assert _transfer(h, a, "nobody", "1.00").status_code == 404
            for bad in ("1.001", "-3", "0", "abc", "NaN"):
                assert _transfer(h, a, b, bad).status_code == 422, bad
            assert h.get(f"/ledger/api/transfers/{made['transfer_id']}").json()["idempotency_key"] == "k-1"
            assert h.get(f"/ledger/api/transfers/{uuid.uuid4()}").status_code == 404
        with stack.http(token=None) as h:
            assert _transfer(h, a, b, "1.00").status_code == 401
        # The standby region refuses writes with its reason, and nothing changes.
        before = _audit(stack)
        with stack.http(WEST) as h:
            refused = _transfer(h, a, b, "1.00")
            assert refused.status_code == 503
            assert "not the active region" in refused.json()["detail"]
        # Concurrent transfers between few accounts: no deadlock, no negative balance, money conserved.
        result = run_load(_client_factory(stack), account_ids(ACCOUNTS)[:4], 300, 12, max_amount_cents=50_000,
                          retry_for=WAIT)
        assert result.gave_up == 0 and result.acknowledged + sum(result.refused.values()) == 300
        assert set(result.refused) <= {"422"}
        after = _audit(stack)
        assert after["transfer_count"] == before["transfer_count"] + result.acknowledged
        assert Decimal(after["total_balance"]) == BALANCE * ACCOUNTS
        assert all(Decimal(acc["balance"]) >= 0 for acc in after["accounts"])
        # The standby shows the same once it has replayed (reads come from each region's own node).
        poll_until(lambda: _audit(stack, WEST)["transfer_count"] == after["transfer_count"], timeout=WAIT,
                   what="the standby to replay the transfers")
        status = stack.rf_json("status")
        roles = {s["name"]: s.get("role") for s in status["servers"]}
        assert roles == {f"{EAST}-ledger-db": "primary", f"{WEST}-ledger-db": "standby"}


def test_kill_under_load_failover_missing_report_reapply_and_zero_loss_failback(servers_root, tmp_path):  # noqa: F811
    with running_stack(servers_root, init_args=("--ledger",)) as stack:
        _seed(stack)
        nodes = ledger_nodes(stack.config, stack.secrets)
        acks_path = tmp_path / "acks.jsonl"
        with acks_path.open("a") as acks:
            run_load(_client_factory(stack), account_ids(ACCOUNTS), 100, 4, acks=acks, retry_for=WAIT)
        replicated = {a["transfer_id"] for a in read_acks(acks_path)}
        lsn = nodes[EAST].status().current_lsn
        nodes[WEST].wait_replayed(lsn, WAIT)
        # The standby stops receiving (its WAL receiver stopped): what east acknowledges now never reaches it.
        with nodes[WEST].connect() as conn:
            conn.execute("alter system set primary_conninfo = ''")
            conn.execute("select pg_reload_conf()")
        poll_until(lambda: _scalar(nodes[WEST], "select count(*) from pg_stat_wal_receiver") == 0, timeout=WAIT,
                   what="the standby's WAL receiver to stop")
        with acks_path.open("a") as acks:
            run_load(_client_factory(stack), account_ids(ACCOUNTS), 40, 4, acks=acks, retry_for=WAIT)
        unreplicated = {a["transfer_id"] for a in read_acks(acks_path)} - replicated
        assert len(unreplicated) == 40

        # Load goes on while us-east-1 (region and database primary) is SIGKILLed and the plan fails over.
        stop = threading.Event()
        during: dict = {}

        def load() -> None:
            with (tmp_path / "during.jsonl").open("a") as f:
                during["result"] = run_load(_client_factory(stack), account_ids(ACCOUNTS), 200, 4, acks=f,
                                            retry_for=180, stop=stop)

        (tmp_path / "during.jsonl").touch()
        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        try:
            poll_until(lambda: len(read_acks(tmp_path / "during.jsonl")) >= 20, timeout=WAIT,
                       what="the load to be under way")
            assert f"{EAST}-ledger-db" in kill_region(stack.config, EAST)  # SIGKILL, by their pid files
            record = stack.rf_json("failover", "--plan", "ledger", "--to", WEST, "--yes", timeout=400)
            assert record["status"] == "SUCCEEDED", record
            loader.join(300)
        finally:
            stop.set()
            loader.join(60)
        result = during["result"]
        assert result.gave_up == 0 and not result.refused, result.as_dict()
        after_kill = read_acks(tmp_path / "during.jsonl")
        assert any(a["region"] == WEST for a in after_kill)
        assert nodes[EAST].fenced
        secret = read_secret(secret_path(stack.config.data_dir))
        assert secret is not None and secret.primary_region == WEST

        # `up` brings us-east-1 back; its database starts fenced (no TCP port) and its history is recorded.
        stack.rf("up", "--detach", timeout=120)
        assert not _tcp_open(nodes[EAST].port)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host="127.0.0.1", port=nodes[EAST].port, user=secret.user, password=secret.password,
                            dbname="ledger", connect_timeout=2)
        report = stack.rf_json("ledger", "missing")
        reported = {t["transfer_id"] for t in report["transfers"]}
        # Exactly what east acknowledged after the cut (before the load and during it, until the kill), plus
        # the transfers in flight when east died (committed there, their answer lost, retried on west under
        # the same idempotency key).
        acked_by_east = unreplicated | {a["transfer_id"] for a in after_kill if a["region"] == EAST}
        assert acked_by_east <= reported
        extra = reported - acked_by_east
        assert not extra & replicated
        retried_keys = {a["idempotency_key"] for a in after_kill if a["region"] == WEST}
        assert all(t["idempotency_key"] in retried_keys for t in report["transfers"] if t["transfer_id"] in extra)
        assert all(t["old_primary"] == EAST and t["committed_at"] for t in report["transfers"])
        final_before = _audit(stack)
        assert not reported & {t["transfer_id"] for t in final_before["transfers"]}

        # Re-apply: the missing transfers are committed once on the primary; a second run changes nothing.
        reapplied = stack.rf_json("ledger", "missing", "--reapply")["reapply"]
        assert reapplied["reapplied"] + reapplied["already_present"] + reapplied["refused_overdraw"] == len(reported)
        assert reapplied["already_present"] == len(extra)  # in flight: retried on west under its key
        again = stack.rf_json("ledger", "missing", "--reapply")["reapply"]
        assert again["reapplied"] == 0
        audit = _audit(stack)
        on_primary = [t["transfer_id"] for t in audit["transfers"]]
        assert len(on_primary) == len(set(on_primary))
        assert Decimal(audit["total_balance"]) == BALANCE * ACCOUNTS

        # Failback by switchover, with transfers going on: nothing acknowledged is lost.
        with (tmp_path / "failback.jsonl").open("a") as f:
            box: dict = {}
            t = threading.Thread(target=lambda: box.setdefault("r", run_load(
                _client_factory(stack), account_ids(ACCOUNTS), 150, 4, acks=f, retry_for=180)), daemon=True)
            t.start()
            back = stack.rf_json("failback", "--plan", "ledger", "--yes", timeout=400)
            t.join(300)
        assert back["status"] == "SUCCEEDED", back
        assert box["r"].gave_up == 0
        final = _audit(stack, EAST)  # the primary itself (the access point follows the control within a second)
        final_ids = {t["transfer_id"] for t in final["transfers"]}
        every_ack = read_acks(acks_path) + after_kill + read_acks(tmp_path / "failback.jsonl")
        lost = [a["transfer_id"] for a in every_ack if a["transfer_id"] not in final_ids | reported]
        assert lost == []
        assert all(a["transfer_id"] in final_ids for a in read_acks(tmp_path / "failback.jsonl"))
        assert Decimal(final["total_balance"]) == BALANCE * ACCOUNTS
        assert len(final["transfers"]) == len(final_ids)
        roles = {s["name"]: (s.get("role"), s.get("fenced")) for s in stack.rf_json("status")["servers"]}
        assert roles == {f"{EAST}-ledger-db": ("primary", False), f"{WEST}-ledger-db": ("standby", False)}
        poll_until(lambda: _audit(stack, WEST)["transfer_count"] == final["transfer_count"], timeout=WAIT,
                   what="us-west-2 to follow the new primary")


def test_synchronous_commit_loses_no_acknowledged_transfer_when_the_primary_dies(servers_root,  # noqa: F811
                                                                                 tmp_path):
    with running_stack(servers_root, init_args=("--ledger",), settings={"synchronous": "true"}) as stack:
        _seed(stack)
        nodes = ledger_nodes(stack.config, stack.secrets)
        with nodes[EAST].connect() as conn:
            assert conn.execute("select sync_state from pg_stat_replication").fetchall() == [("sync",)]
        # The standby stops receiving: east's commits now wait for it, so none is acknowledged.
        with nodes[WEST].connect() as conn:
            conn.execute("alter system set primary_conninfo = ''")
            conn.execute("select pg_reload_conf()")
        acks_path = tmp_path / "acks.jsonl"
        acks_path.touch()
        box: dict = {}

        def load() -> None:
            with acks_path.open("a") as f:
                box["r"] = run_load(_client_factory(stack), account_ids(ACCOUNTS), 60, 4, acks=f, retry_for=240)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        # Wait until east has a commit written locally and waiting for the standby.
        poll_until(lambda: _scalar(nodes[EAST], "select count(*) from pg_stat_activity where wait_event = 'SyncRep'")
                   >= 1, timeout=WAIT, what="commits waiting for the synchronous standby")
        assert read_acks(acks_path) == []
        kill_region(stack.config, EAST)
        record = stack.rf_json("failover", "--plan", "ledger", "--to", WEST, "--yes", timeout=400)
        assert record["status"] == "SUCCEEDED", record
        loader.join(300)
        assert box["r"].gave_up == 0 and box["r"].acknowledged == 60
        stack.rf("up", "--detach", timeout=120)  # east back, fenced: its unacknowledged commits are recorded
        report = stack.rf_json("ledger", "missing")
        assert report["count"] >= 1
        acks = read_acks(acks_path)
        acked_ids = {a["transfer_id"] for a in acks}
        assert not acked_ids & {t["transfer_id"] for t in report["transfers"]}  # RPO 0: nothing acknowledged lost
        final = _audit(stack, WEST)  # the primary now
        assert acked_ids <= {t["transfer_id"] for t in final["transfers"]}
        # Every reported transfer was retried under its key and committed on us-west-2 instead.
        assert {t["idempotency_key"] for t in report["transfers"]} <= {a["idempotency_key"] for a in acks}
        assert Decimal(final["total_balance"]) == BALANCE * ACCOUNTS


def _canary_ok(stack: Stack, region: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    with stack.http(region) as h:
        text = h.get("/metrics").text
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "regionflow_ledger_canary_total" and s.labels == {"status": "succeeded"})


def test_rotated_secret_refuses_the_old_password_and_the_canaries_go_on(servers_root):  # noqa: F811
    with running_stack(servers_root, init_args=("--ledger",), extra_config="[canary]\ninterval = 0.3") as stack:
        _seed(stack)
        for region in (EAST, WEST):  # each region's canary transfer goes through the access point
            poll_until(lambda r=region: _canary_ok(stack, r) >= 2, timeout=WAIT, what=f"{region}'s ledger canary")
        plan = stack.root / "plans" / "rotate.yaml"
        plan.write_text("name: rotate\nregions: [us-east-1, us-west-2]\nworkflows:\n  us-east-1:\n"
                        "    - name: rotate the database secret\n      kind: rotate_secret\n      timeout: 60\n")
        old = read_secret(secret_path(stack.config.data_dir))
        assert old is not None
        port = stack.config.ledger.ports[EAST]
        with psycopg.connect(host="127.0.0.1", port=port, user=old.user, password=old.password, dbname="ledger",
                             connect_timeout=3) as conn:
            assert conn.execute("select count(*) from accounts where id like 'acct-%'").fetchone() == (ACCOUNTS,)
        record = stack.rf_json("plan", "run", str(plan), "--activate", EAST, timeout=200)
        assert record["status"] == "SUCCEEDED", record
        output = record["steps"][0]["output"]
        assert output["regions"] == {EAST: "confirmed", WEST: "confirmed"}
        new = read_secret(secret_path(stack.config.data_dir))
        assert new is not None and new.user != old.user and new.password != old.password
        assert (secret_path(stack.config.data_dir).stat().st_mode & 0o777) == 0o600
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host="127.0.0.1", port=port, user=old.user, password=old.password, dbname="ledger",
                            connect_timeout=3)
        with psycopg.connect(host="127.0.0.1", port=port, user=new.user, password=new.password, dbname="ledger",
                             connect_timeout=3):
            pass
        a, b = account_ids(ACCOUNTS)[:2]
        with stack.http() as h:
            assert _transfer(h, a, b, "1.00").status_code == 201  # the regions run on the new login
        for region in (EAST, WEST):
            seen = _canary_ok(stack, region)
            poll_until(lambda r=region, n=seen: _canary_ok(stack, r) >= n + 2, timeout=WAIT,
                       what=f"{region}'s ledger canary after the rotation")
        audit = _audit(stack)
        canaries = [acc for acc in audit["accounts"] if acc["id"].startswith("canary-")]
        assert len(canaries) == 4 and sum(Decimal(acc["balance"]) for acc in canaries) == Decimal("4.00")
        assert Decimal(audit["total_balance"]) == BALANCE * ACCOUNTS + Decimal("4.00")


def test_ledger_drill_passes():
    done = subprocess.run([REGIONFLOW, "drill", "--workload", "ledger", "--scenario", "kill", "--transfers", "600",
                           "--json", "--report", "/tmp/regionflow-ledger-drill-reports"], capture_output=True,
                          text=True, timeout=800)
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["passed"], (report, done.stderr[-2000:])
    assert report["load"]["acknowledged"] == 600
    assert report["rto_seconds"]["failover_plan"] is not None
    assert all(report["invariants"].values())
    assert Path(report.get("stack_dir") or "/nonexistent").exists() is False
