"""A PostgreSQL cluster started by regionflow itself (servers.PostgresServer and the runner), for the suites.

The StateStore suites run on it as a third backend beside SQLite and the machine's PostgreSQL, so they
test what `regionflow up` starts: the same initdb, settings, pg_hba and password login.

Where the clusters live: PostgreSQL runs as the `postgres` OS user when the tests run as root, and that
user cannot search pytest's temp tree (/tmp/pytest-of-root and its pytest-N are 0700, and pytest resets
their mode every session). Rather than open pytest's tree, each cluster gets its own base directory made
with mkdtemp under the system temp dir (sticky, world-searchable) and given mode 0711: the postgres user
can pass through it to its data directory but not list it. It is removed afterwards.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from regionflow.servers.base import ServerError
from regionflow.servers.postgres import PostgresServer
from regionflow.servers.runner import ServerProc, start_server, stop_server, wait_servers_healthy

START_TIMEOUT = 60.0  # start-up takes well under a second here; this bounds a loaded CI machine


def free_port() -> int:
    """A loopback TCP port nobody listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def reachable_dir(prefix: str = "regionflow-pg-") -> Iterator[Path]:
    """A fresh directory the postgres OS user can pass through (mode 0711), removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        base.chmod(0o711)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class Cluster:
    """A running PostgresServer with its runner directories."""

    server: PostgresServer
    base: Path
    password: str
    proc: ServerProc | None = None
    made: list[str] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return self.base / "run"

    @property
    def log_dir(self) -> Path:
        return self.base / "logs"

    def start(self) -> None:
        """Start (initdb first when new) and wait until healthy and provisioned."""
        self.proc = start_server(self.server, self.run_dir, self.log_dir)
        wait_servers_healthy([self.proc], timeout=START_TIMEOUT)

    def stop(self, *, kill: bool = False) -> bool:
        """Stop it the way `down` does (the server's stop signal), or SIGKILL its process group."""
        return stop_server(self.run_dir, self.server.name, kill=kill, stop_signal=self.server.stop_signal)

    def connect(self, dbname: str | None = None) -> psycopg.Connection:
        """A psycopg connection as the cluster's superuser (autocommit)."""
        return psycopg.connect(host="127.0.0.1", port=self.server.port, user=self.server.user,
                               password=self.password, dbname=dbname or self.server.database,
                               connect_timeout=5, autocommit=True)

    def url(self, database: str | None = None, *, with_password: bool = True) -> str:
        """A state-store URL of database (default: the provisioned one), the password in it unless not."""
        url = make_url(self.server.url).set(database=database or self.server.database)
        if with_password:
            url = url.set(password=self.password)
        return url.render_as_string(hide_password=False)

    def make_database(self) -> str:
        """The URL (password included) of a new, empty database; drop_made() drops it."""
        name = f"rf_test_{uuid.uuid4().hex[:8]}"
        with self.connect("postgres") as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        self.made.append(name)
        return self.url(name)

    def drop_made(self) -> None:
        """Drop the databases make_database made (their connections too)."""
        with self.connect("postgres") as conn:
            while self.made:
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(
                    sql.Identifier(self.made.pop())))


@contextlib.contextmanager
def running_cluster(name: str = "test-postgres") -> Iterator[Cluster]:
    """A new cluster in its own reachable directory, stopped and removed afterwards even when the body
    (or the start) fails. pytest.fail, not a traceback, when it cannot start."""
    with reachable_dir() as base:
        password = secrets.token_urlsafe(18)
        cluster = Cluster(PostgresServer(name, None, base / "data", port=free_port(), password=password),
                          base, password)
        try:
            try:
                cluster.start()
            except ServerError as exc:
                pytest.fail(f"regionflow could not start its PostgreSQL: {exc}", pytrace=False)
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One regionflow-started cluster for the whole session (tests get fresh databases on it)."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def pgserver_url_factory(pg_cluster: Cluster) -> Iterator[Callable[[], str]]:
    """Make URLs of fresh, empty databases on the session's regionflow-started cluster; dropped after."""
    try:
        yield pg_cluster.make_database
    finally:
        pg_cluster.drop_made()


@pytest.fixture
def pgserver_url(pgserver_url_factory: Callable[[], str]) -> str:
    """URL of a fresh, empty database on the regionflow-started cluster, dropped after the test."""
    return pgserver_url_factory()
