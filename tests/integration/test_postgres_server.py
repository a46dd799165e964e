"""PostgresServer under the runner: what `up`/`down` and a crash do to a region's own cluster, and how a
wrong password or a cluster that is down reaches the operator (one line)."""

from __future__ import annotations

import os
import pwd
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from pgkit import Cluster, free_port, reachable_dir, running_cluster
from regionflow.errors import StateUnavailable
from regionflow.polling import poll_until
from regionflow.servers.base import ServerError
from regionflow.servers.postgres import PostgresServer
from regionflow.servers.runner import pid_alive, read_pid, server_alive, signal_server
from regionflow.state import JobRecord, open_state_store
from testenv import REPO

pytestmark = pytest.mark.pgserver

REGION = "us-east-1"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the postgres OS user is used only when we are root")


def make_job(job_id: str) -> JobRecord:
    return JobRecord(job_id=job_id, input_key=f"input/{job_id}.csv", version_id="v1", input_etag="etag-in",
                     pipeline="default", owner_region=REGION, owner_epoch=1, created_at=0.0)


def _system_id(cluster: Cluster) -> int:
    """The cluster's identity from initdb: a second initdb would change it."""
    with cluster.connect() as conn:
        row = conn.execute("select system_identifier from pg_control_system()").fetchone()
    assert row is not None
    return int(row[0])


def _log_since_last_start(cluster: Cluster) -> str:
    text = (cluster.log_dir / f"{cluster.server.name}.log").read_text()
    return text.rsplit(f"starting {cluster.server.name}", 1)[-1]


def _make_table(cluster: Cluster) -> None:
    with cluster.connect() as conn:
        conn.execute("create table marks (id text primary key)")
        conn.execute("insert into marks values ('committed')")


def _marks(cluster: Cluster) -> list[str]:
    with cluster.connect() as conn:
        return [r[0] for r in conn.execute("select id from marks order by id")]


def test_files_user_and_secrets_of_a_running_cluster() -> None:
    with running_cluster("us-east-1-postgres") as cluster:
        name, server = cluster.server.name, cluster.server
        assert cluster.proc is not None
        # pid and log named after the server, under the runner's directories
        assert read_pid(cluster.run_dir, name) == cluster.proc.pid and pid_alive(cluster.proc.pid)
        log = (cluster.log_dir / f"{name}.log").read_text()
        assert f"starting {name}" in log and "ready to accept connections" in log
        assert server.url == f"postgresql://regionflow@127.0.0.1:{server.port}/regionflow" == server.address
        # the password is nowhere to be seen: not in the url, describe(), argv, the log, or a leftover pwfile
        cmdline = Path(f"/proc/{cluster.proc.pid}/cmdline").read_bytes().decode()
        for text in (server.url, repr(server), str(server.describe()), cmdline, log):
            assert cluster.password not in text
        assert not [p for p in cluster.base.rglob("*") if "-pw-" in p.name]
        # TCP on loopback only, no unix socket; password logins only; checksums on
        assert not list(cluster.base.rglob(".s.PGSQL.*")) and not list(Path("/tmp").glob(f".s.PGSQL.{server.port}"))
        hba = [line.split() for line in (server.data_dir / "pg_hba.conf").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
        assert hba == [["host", "all", "all", "127.0.0.1/32", "scram-sha-256"],
                       ["host", "all", "all", "::1/128", "scram-sha-256"]]
        with cluster.connect() as conn:
            settings = dict(conn.execute("select name, setting from pg_settings where name in "
                                         "('data_checksums', 'fsync', 'listen_addresses', 'server_encoding')"))
            owner = conn.execute("select pg_get_userbyid(datdba) from pg_database where datname = 'regionflow'")
            assert owner.fetchone() == ("regionflow",)
        assert settings == {"data_checksums": "on", "fsync": "on", "listen_addresses": "127.0.0.1",
                            "server_encoding": "UTF8"}
        st = server.data_dir.stat()
        assert stat.S_IMODE(st.st_mode) == 0o700
        if os.geteuid() == 0:
            status = Path(f"/proc/{cluster.proc.pid}/status").read_text()
            uid = int(re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE).group(1))  # type: ignore[union-attr]
            assert uid == st.st_uid == pwd.getpwnam("postgres").pw_uid
        assert cluster.stop()
        assert not (cluster.run_dir / f"{name}.pid").exists()
        assert "database system is shut down" in _log_since_last_start(cluster)  # a clean, fast shutdown


def test_prepare_keeps_the_cluster_and_a_restart_keeps_committed_rows() -> None:
    with running_cluster() as cluster:
        url = cluster.url(with_password=False)
        store = open_state_store(url, REGION, password=cluster.password)
        try:
            assert cluster.password not in repr(store)
            assert store.create_job(make_job("job-1"))
        finally:
            store.close()
        _make_table(cluster)
        identity = _system_id(cluster)
        assert cluster.stop()
        cluster.server.prepare()  # what `up` does again: must not touch the cluster
        cluster.start()  # prepare() once more, then start and provision on the same data
        assert _system_id(cluster) == identity
        assert "database system was shut down at" in _log_since_last_start(cluster)  # no recovery needed
        assert _marks(cluster) == ["committed"]
        store = open_state_store(url, REGION, password=cluster.password)
        try:
            job = store.get_job("job-1")
            assert job is not None and job.owner_region == REGION
        finally:
            store.close()


def test_sigkill_of_the_process_group_recovers_committed_rows_only() -> None:
    with running_cluster() as cluster:
        _make_table(cluster)
        store = open_state_store(cluster.url(), REGION)
        try:
            assert store.create_job(make_job("job-1"))
        finally:
            store.close()
        pending = psycopg.connect(cluster.url(), connect_timeout=5)  # a transaction open at the crash
        pending.execute("insert into marks values ('uncommitted')")
        try:
            name = cluster.server.name
            pid = signal_server(cluster.run_dir, name, signal.SIGKILL)
            assert pid is not None
            # the whole group: no backend may survive its postmaster
            poll_until(lambda: not server_alive(cluster.run_dir, name) and not _group_members(pid), timeout=10,
                       interval=0.05, what="the killed cluster's processes to be gone")
        finally:
            pending.close()
        cluster.start()
        assert "not properly shut down; automatic recovery in progress" in _log_since_last_start(cluster)
        assert _marks(cluster) == ["committed"]
        store = open_state_store(cluster.url(), REGION)
        try:
            assert store.get_job("job-1") is not None
        finally:
            store.close()


def _group_members(pgid: int) -> list[int]:
    """Live processes in process group pgid (zombies excluded)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def test_wrong_or_missing_password_and_a_cluster_that_is_down_are_one_line(pg_cluster: Cluster) -> None:
    url = pg_cluster.url(with_password=False)
    cases = [(url, "not-the-password", "password authentication failed"),
             (url, None, "no password supplied"),
             (f"postgresql://regionflow@127.0.0.1:{free_port()}/regionflow", "pw", "Connection refused")]
    for target, password, reason in cases:
        with pytest.raises(StateUnavailable) as caught:
            open_state_store(target, REGION, password=password)
        message = str(caught.value)
        assert reason in message and "cannot connect" in message and "\n" not in message, message
        assert "not-the-password" not in message and pg_cluster.password not in message
    # the health probe answers the same reason as a string, never an exception
    wrong = PostgresServer("probe", None, pg_cluster.server.data_dir, port=pg_cluster.server.port, password="nope")
    assert "password authentication failed" in (wrong.probe() or "")
    assert pg_cluster.server.probe() is None


def test_a_region_whose_cluster_is_down_exits_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.path.join(REPO, "src")}  # this checkout's regionflow
    subprocess.run([sys.executable, "-m", "regionflow.cli", "init", "--dir", str(tmp_path)], check=True,
                   capture_output=True, timeout=60, env=env)
    config = tmp_path / "regionflow.toml"
    down = f"postgresql://regionflow@127.0.0.1:{free_port()}/regionflow"
    text, found = re.subn(r'^state = "sqlite:///\.regionflow/us-east-1/state\.db"$', f'state = "{down}"',
                          config.read_text(), flags=re.MULTILINE)
    assert found == 1
    config.write_text(text)
    done = subprocess.run([sys.executable, "-m", "regionflow.region.server", "--config", str(config), "--region",
                           REGION], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: state store") and "Connection refused" in lines[0], lines


@as_root
def test_prepare_names_a_directory_the_postgres_user_cannot_search() -> None:
    with reachable_dir() as base:
        private = base / "private"
        private.mkdir(mode=0o700)
        server = PostgresServer("pg", None, private / "region" / "postgres", port=free_port(), password="pw")
        with pytest.raises(ServerError) as caught:
            server.prepare()
        message = str(caught.value)
        assert f"cannot search {private}: chmod o+x {private}" in message and "\n" not in message
        assert not (private / "region" / "postgres").exists()


def test_prepare_refuses_a_non_empty_directory_that_is_no_cluster() -> None:
    with reachable_dir() as base:
        data = base / "postgres"
        data.mkdir()
        (data / "notes.txt").write_text("mine")
        with pytest.raises(ServerError, match="holds no PostgreSQL cluster"):
            PostgresServer("pg", None, data, port=free_port(), password="pw").prepare()
        assert (data / "notes.txt").read_text() == "mine"
