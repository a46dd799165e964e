"""The ledger's two PostgreSQL nodes (servers/ledger_db.py) on real clusters started here: streaming
replication, a primary SIGKILLed with commits its standby never replayed, promote, the old primary
started fenced (no TCP), what it committed read over its private socket, then pg_rewind and rejoin."""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgkit import free_port, reachable_dir
from regionflow.polling import poll_until
from regionflow.servers.ledger_db import LedgerNode, slot_name
from regionflow.servers.runner import start_server, stop_server, wait_servers_healthy

START_TIMEOUT = 60.0
WAIT = 30.0


class Pair:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.password = secrets.token_urlsafe(18)
        east_port, west_port = free_port(), free_port()
        self.east = LedgerNode("us-east-1-ledger-db", "us-east-1", base / "east", port=east_port,
                               password=self.password)
        self.west = LedgerNode("us-west-2-ledger-db", "us-west-2", base / "west", port=west_port,
                               password=self.password, upstream_port=east_port)

    def start(self, node: LedgerNode) -> None:
        proc = start_server(node, self.base / "run", self.base / "logs")
        wait_servers_healthy([proc], timeout=START_TIMEOUT)

    def stop(self, node: LedgerNode, *, kill: bool = False) -> None:
        stop_server(self.base / "run", node.name, kill=kill, stop_signal=node.stop_signal)

    def sql(self, node: LedgerNode, statement: str, params: tuple = ()) -> list[tuple]:
        with node.connect("ledger") as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []


@pytest.fixture
def pair() -> Iterator[Pair]:
    with reachable_dir("regionflow-ledger-") as base:
        p = Pair(base)
        try:
            p.start(p.east)
            p.east.ensure_slot("us-west-2")
            p.start(p.west)
            yield p
        finally:
            for node in (p.west, p.east):
                p.stop(node, kill=True)


def _tcp_open(port: int) -> bool:
    with contextlib.closing(socket.socket()) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_kill_promote_fence_read_missing_then_rewind_and_rejoin(pair: Pair) -> None:
    east, west = pair.east, pair.west
    assert east.status().role == "primary" and west.status().role == "standby"
    pair.sql(east, "create table t (id int primary key)")
    pair.sql(east, "insert into t select generate_series(1, 100)")
    lsn = east.status().current_lsn
    assert lsn is not None
    west.wait_replayed(lsn, WAIT)
    assert pair.sql(west, "select count(*) from t") == [(100,)]
    with east.connect() as conn:
        slots = conn.execute("select slot_name, active from pg_replication_slots").fetchall()
    assert slots == [(slot_name("us-west-2"), True)]

    # Replay paused: the standby receives commits but shows none of them (its lag grows).
    with west.connect() as conn:
        conn.execute("select pg_wal_replay_pause()")
    pair.sql(east, "insert into t select generate_series(101, 110)")
    poll_until(lambda: west.status().replay_paused and (west.status().replay_lag_bytes or 0) > 0,
               timeout=WAIT, what="the standby to fall behind")
    assert pair.sql(west, "select count(*) from t") == [(100,)]
    with west.connect() as conn:
        conn.execute("select pg_wal_replay_resume()")
    lsn = east.status().current_lsn
    assert lsn is not None
    west.wait_replayed(lsn, WAIT)
    # PostgreSQL replays all received WAL before it promotes, so what a failover loses is what never
    # arrived: cut the stream (an empty primary_conninfo stops the WAL receiver), then commit more.
    with west.connect() as conn:
        conn.execute("alter system set primary_conninfo = ''")
        conn.execute("select pg_reload_conf()")
    poll_until(lambda: pair.sql(west, "select count(*) from pg_stat_wal_receiver") == [(0,)],
               timeout=WAIT, what="the standby's WAL receiver to stop")
    pair.sql(east, "insert into t select generate_series(111, 130)")
    pair.stop(east, kill=True)
    east.fence("failed over to us-west-2")

    status = west.promote()
    assert status.role == "primary" and status.timeline == 2
    assert pair.sql(west, "select count(*) from t") == [(110,)]
    pair.sql(west, "insert into t values (1000)")

    # The old primary comes back fenced: no TCP port, its rows readable over the private socket.
    pair.start(east)
    assert not _tcp_open(east.port)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=east.port, user=east.user, password=pair.password,
                        dbname="ledger", connect_timeout=2)
    on_old = {r[0] for r in pair.sql(east, "select id from t")}
    on_new = {r[0] for r in pair.sql(west, "select id from t")}
    assert on_old - on_new == set(range(111, 131))

    # Rewind onto the new timeline, follow the new primary, unfence: it replays the new rows.
    pair.stop(east)
    east.rewind(west)
    east.follow(west)
    east.unfence()
    west.ensure_slot("us-east-1")
    pair.start(east)
    assert _tcp_open(east.port)
    lsn = west.status().current_lsn
    assert lsn is not None
    east.wait_replayed(lsn, WAIT)
    assert east.status().role == "standby"
    assert {r[0] for r in pair.sql(east, "select id from t")} == on_new
    # the old primary's unreplicated rows are gone from it; the new primary streams to it through its slot
    with west.connect() as conn:
        assert conn.execute("select slot_name, active from pg_replication_slots").fetchall() == [
            (slot_name("us-east-1"), True)]


def test_synchronous_commit_waits_for_the_standby_to_apply(pair: Pair) -> None:
    east, west = pair.east, pair.west
    pair.sql(east, "create table t (id int primary key)")
    east.set_synchronous("us-west-2")
    poll_until(lambda: pair.sql(east, "select sync_state from pg_stat_replication") == [("sync",)],
               timeout=WAIT, what="the standby to be synchronous")
    for i in range(20):
        pair.sql(east, "insert into t values (%s)", (i,))
        # remote_apply: once the commit returns, the standby already shows the row
        assert pair.sql(west, "select count(*) from t") == [(i + 1,)]
    east.set_synchronous(None)
