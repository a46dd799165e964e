"""LedgerNode: one region's node of the ledger's PostgreSQL, a primary or a physical streaming standby.

The ledger workload (DESIGN §9) keeps its accounts and transfers on one primary and a streaming standby in
the other region. A node is a PostgresServer (same initdb, loopback-only TCP, scram passwords, run as the
``postgres`` OS user under root) with replication settings on top. A standby is made with
``pg_basebackup -R -X stream -C -S SLOT`` from its upstream instead of initdb.

Three traps seen on this machine (../shared/notes/backends.md) shape the functions below:
1. after ``pg_promote()`` a ``CHECKPOINT`` must run before pg_rewind reads the new primary, or pg_rewind
   finds nothing to do and the old node cannot follow the new timeline: promote() checkpoints;
2. pg_rewind copies postgresql.conf and postgresql.auto.conf from its source: the port is always passed on
   the command line (command()) and follow() rewrites the node's own standby settings after a rewind;
3. one replication slot per node: the slot a primary keeps for a standby is named after the standby
   (slot_name()), created by ensure_slot() on whichever node is primary.

A fenced node (fence()) starts with no TCP listener at all, only a unix socket in a private directory:
no client can write to it, and regionflow can still read what it committed (the missing-transaction
report) before it is rewound.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from regionflow.polling import PollTimeout, poll_until
from regionflow.servers.base import ServerError, run_as_kwargs
from regionflow.servers.postgres import SETTINGS, PostgresServer, _one_line

__all__ = ["LedgerNode", "NodeStatus", "slot_name"]

REPLICATION_SETTINGS = {
    "wal_level": "replica",
    "max_wal_senders": "5",
    "max_replication_slots": "5",
    "hot_standby": "on",
    "wal_log_hints": "on",  # initdb -k gives checksums too; either lets pg_rewind run
    "track_commit_timestamp": "on",  # commit times of the transfers the missing-transaction report lists
    "wal_keep_size": "64MB",
    "wal_receiver_status_interval": "1s",
    "hot_standby_feedback": "on",
}
REPLICATION_HBA = """\
host    replication  all   127.0.0.1/32  scram-sha-256
local   all          all                 scram-sha-256
"""
# Set with ALTER SYSTEM on a primary (synchronous mode, a switchover's write stop): never on a standby.
_PRIMARY_ONLY = ("synchronous_standby_names", "synchronous_commit", "default_transaction_read_only")
BASEBACKUP_TIMEOUT = 300.0
REWIND_TIMEOUT = 300.0


def slot_name(region: str) -> str:
    """The replication slot a primary keeps for the standby in region (slot names allow [a-z0-9_])."""
    return "rf_" + region.replace("-", "_")


def _drop_settings(auto_conf: Path, names: tuple[str, ...], *, write: bool = True) -> list[str]:
    """The lines of a postgresql.auto.conf without the settings names (written back when write)."""
    lines = auto_conf.read_text().splitlines() if auto_conf.exists() else []
    keep = [line for line in lines if line.split("=", 1)[0].strip() not in names]
    if write and keep != lines:
        auto_conf.write_text("\n".join(keep) + "\n")
    return keep


@dataclass(frozen=True)
class NodeStatus:
    """What a node says of itself: its role and positions in the WAL (LSNs as text, lag of a standby)."""

    role: str  # "primary" | "standby"
    timeline: int
    current_lsn: str | None  # primary: pg_current_wal_lsn()
    receive_lsn: str | None  # standby: pg_last_wal_receive_lsn()
    replay_lsn: str | None  # standby: pg_last_wal_replay_lsn()
    replay_lag_bytes: int | None  # standby: receive - replay
    replay_lag_seconds: float | None  # standby: now() - pg_last_xact_replay_timestamp() while behind, else 0
    replay_paused: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class LedgerNode(PostgresServer):
    """One ledger node on 127.0.0.1:port. upstream_port: the primary a new standby is copied from (None:
    the node starts life as the primary). The superuser and its password are the cluster's (secrets)."""

    kind = "ledger-db"

    def __init__(self, name: str, region: str, data_dir: Path, *, port: int, password: str,
                 upstream_port: int | None = None, upstream_name: str | None = None,
                 initialized: bool = False) -> None:
        super().__init__(name, region, data_dir, port=port, password=password, database="ledger")
        self.upstream_port = upstream_port
        self.upstream_name = upstream_name
        # The ledger has been set up before (its secret exists): a primary whose data directory is gone
        # is not recreated empty, which would start a second, empty history of the accounts.
        self.initialized = initialized

    def start_after(self) -> tuple[str, ...]:
        if self.upstream_name and not (self.data_dir / "PG_VERSION").exists():
            return (self.upstream_name,)
        return ()

    def details(self) -> dict[str, Any]:
        return {"fenced": self.fenced, **self.status().as_dict()}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "fenced": self.fenced}

    # -- files ------------------------------------------------------------------------------------
    @property
    def fence_file(self) -> Path:
        """Present while the node is fenced: it then starts with no TCP listener (see fence())."""
        return self.data_dir.with_name(self.data_dir.name + ".fenced")

    @property
    def socket_dir(self) -> Path:
        """The private directory of a fenced node's unix socket; short (a socket path must fit in ~107
        bytes) and unique per data directory."""
        digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"rf-ledger-{digest}"

    @property
    def fenced(self) -> bool:
        return self.fence_file.exists()

    def fence(self, reason: str) -> None:
        """Mark the node fenced (durably): its next start opens no TCP port. Stopping a running node is
        the caller's job (servers.runner.stop_server)."""
        tmp = self.fence_file.with_suffix(".tmp")
        tmp.write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {reason}\n")
        os.replace(tmp, self.fence_file)

    def unfence(self) -> None:
        self.fence_file.unlink(missing_ok=True)

    # -- process ----------------------------------------------------------------------------------
    def command(self) -> list[str]:
        argv = [self._bin("postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        # cluster_name is the standby's application_name upstream, which synchronous_standby_names names.
        settings = {**SETTINGS, **REPLICATION_SETTINGS, "cluster_name": slot_name(self.region or self.name)}
        if self.fenced:
            self._make_socket_dir()
            settings.update({"listen_addresses": "", "unix_socket_directories": str(self.socket_dir)})
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def _make_socket_dir(self) -> None:
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        owner = self._owner()
        if owner is not None:
            os.chown(self.socket_dir, owner[0], owner[1])

    def prepare(self) -> None:
        """initdb a primary, or copy a standby from its upstream with pg_basebackup; keep what exists."""
        if self.upstream_port is None and self.initialized and not (self.data_dir / "PG_VERSION").exists():
            raise ServerError(f"{self.name}: the ledger's primary has no data directory ({self.data_dir}); it is not "
                              "recreated empty. Fail over to the standby (`regionflow failover --plan ledger`), "
                              "or restore the directory")
        if self.upstream_port is None or (self.data_dir / "PG_VERSION").exists():
            super().prepare()
            hba = self.data_dir / "pg_hba.conf"
            if "replication" not in hba.read_text():
                with hba.open("a") as f:
                    f.write(REPLICATION_HBA)
            return
        owner = self._owner()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            self._check_searchable(self.data_dir, owner)
        staging = self.data_dir.with_name(f".{self.data_dir.name}.basebackup")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        if owner is not None:
            os.chown(staging, owner[0], owner[1])
        slot = slot_name(self.region or self.name)
        with contextlib.suppress(ServerError):  # a slot left by a basebackup that crashed half-way
            self._upstream_sql(f"select pg_drop_replication_slot('{slot}') from pg_replication_slots "
                               f"where slot_name = '{slot}' and not active")
        try:
            self._run("pg_basebackup", ["-h", "127.0.0.1", "-p", str(self.upstream_port), "-U", self.user,
                                        "-D", str(staging), "-R", "-X", "stream", "-C", "-S", slot,
                                        "--checkpoint=fast", "--no-password"], BASEBACKUP_TIMEOUT)
            # The copy carries the primary's ALTER SYSTEM settings: a standby must not wait for itself.
            _drop_settings(staging / "postgresql.auto.conf", _PRIMARY_ONLY)
            os.replace(staging, self.data_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _run(self, program: str, args: list[str], timeout: float) -> str:
        kwargs = run_as_kwargs(self.run_as())
        env = {**kwargs.pop("env", os.environ), "PGPASSWORD": self._password, "PGCONNECT_TIMEOUT": "5"}
        try:
            done = subprocess.run([self._bin(program), *args], capture_output=True, text=True, timeout=timeout,
                                  cwd=self.data_dir.parent, stdin=subprocess.DEVNULL, env=env, **kwargs)
        except subprocess.TimeoutExpired:
            raise ServerError(f"{self.name}: {program} did not finish in {timeout:g}s") from None
        except OSError as exc:
            raise ServerError(f"{self.name}: cannot run {program}: {exc}") from None
        if done.returncode != 0:
            raise ServerError(f"{self.name}: {program} failed: {_one_line(done.stderr or done.stdout, last=True)}")
        return done.stdout + done.stderr

    def _upstream_sql(self, statement: str) -> None:
        try:
            with psycopg.connect(host="127.0.0.1", port=self.upstream_port, user=self.user, password=self._password,
                                 dbname="postgres", connect_timeout=5, autocommit=True) as conn:
                conn.execute(statement)  # internal, no user input
        except psycopg.Error as exc:
            raise ServerError(f"{self.name}: upstream: {_one_line(str(exc))}") from None

    def provision(self) -> None:
        """Create the ledger database on a primary; a standby receives it from its primary."""
        if self.status().role == "primary":
            super().provision()

    # -- SQL on the node --------------------------------------------------------------------------
    def connect(self, dbname: str = "postgres", timeout: float = 5.0) -> psycopg.Connection[tuple[Any, ...]]:
        """A superuser connection (autocommit): over TCP, or over the private socket while fenced."""
        return self._connect(dbname, timeout)

    def _connect(self, dbname: str, timeout: float) -> psycopg.Connection[tuple[Any, ...]]:
        # Every path (probe, provision, status) goes through here, so a fenced node is reached by its socket.
        host = str(self.socket_dir) if self.fenced else "127.0.0.1"
        return psycopg.connect(host=host, port=self.port, user=self.user, password=self._password,
                               dbname=dbname, connect_timeout=max(1, round(timeout)), autocommit=True)

    def status(self) -> NodeStatus:
        """This node's role, timeline, LSNs and replay lag (ServerError when it cannot be asked)."""
        try:
            with self.connect() as conn:
                row = conn.execute("""
                    select pg_is_in_recovery(),
                           (select timeline_id from pg_control_checkpoint()),
                           case when pg_is_in_recovery() then null else pg_current_wal_lsn()::text end,
                           pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,
                           case when pg_is_in_recovery()
                                then pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) end,
                           case when not pg_is_in_recovery() then null
                                when pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() then 0
                                else extract(epoch from now() - pg_last_xact_replay_timestamp()) end,
                           case when pg_is_in_recovery() then pg_is_wal_replay_paused() else false end
                """).fetchone()
        except (psycopg.Error, OSError) as exc:
            raise ServerError(f"{self.name}: cannot read its status: {_one_line(str(exc))}") from None
        assert row is not None
        standby = bool(row[0])
        return NodeStatus(
            role="standby" if standby else "primary", timeline=int(row[1]),
            current_lsn=row[2], receive_lsn=row[3], replay_lsn=row[4],
            replay_lag_bytes=None if row[5] is None else max(0, int(row[5])),
            replay_lag_seconds=None if row[6] is None else max(0.0, round(float(row[6]), 3)),
            replay_paused=bool(row[7]))

    def ensure_slot(self, standby_region: str) -> str:
        """Create (on this primary) the physical slot of the standby in standby_region unless it exists."""
        slot = slot_name(standby_region)
        with self.connect() as conn:
            if conn.execute("select 1 from pg_replication_slots where slot_name = %s", (slot,)).fetchone() is None:
                with contextlib.suppress(psycopg.errors.DuplicateObject):
                    conn.execute("select pg_create_physical_replication_slot(%s, true)", (slot,))
        return slot

    def set_synchronous(self, standby_region: str | None) -> None:
        """On a primary: wait for standby_region to apply each commit (remote_apply), or for nobody (None)."""
        names = f'"{slot_name(standby_region)}"' if standby_region else ""
        with self.connect() as conn:
            conn.execute(f"alter system set synchronous_standby_names = '{names}'")
            conn.execute("alter system set synchronous_commit = %s" % ("'remote_apply'" if names else "'on'"))
            conn.execute("select pg_reload_conf()")

    def promote(self, timeout: float = 60.0) -> NodeStatus:
        """Promote this standby and wait until it accepts writes; then CHECKPOINT (trap 1). A primary is
        left as it is."""
        with self.connect() as conn:
            in_recovery = conn.execute("select pg_is_in_recovery()").fetchone()
            if in_recovery and in_recovery[0]:
                done = conn.execute("select pg_promote(true, %s)", (max(1, int(timeout)),)).fetchone()
                if not done or not done[0]:
                    raise ServerError(f"{self.name}: pg_promote() did not finish in {timeout:g}s")
            conn.execute("checkpoint")
        return self.status()

    def wait_replayed(self, lsn: str, timeout: float) -> None:
        """Wait until this standby has replayed lsn (ServerError after timeout seconds)."""
        def replayed() -> bool:
            with self.connect() as conn:
                row = conn.execute("select pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s::pg_lsn) >= 0",
                                   (lsn,)).fetchone()
                return bool(row and row[0])

        try:
            poll_until(replayed, timeout=timeout, interval=0.02, what=f"{self.name} to replay {lsn}")
        except PollTimeout:
            raise ServerError(f"{self.name}: did not replay {lsn} within {timeout:g}s") from None

    def rewind(self, source: LedgerNode) -> str:
        """pg_rewind this stopped node onto source's timeline; its output. The node must not be running."""
        return self._run("pg_rewind", ["--target-pgdata", str(self.data_dir), "--source-server",
                                       f"host=127.0.0.1 port={source.port} user={self.user} dbname=postgres"],
                         REWIND_TIMEOUT)

    def follow(self, upstream: LedgerNode) -> None:
        """Make this stopped node a standby of upstream on its next start: standby.signal and its own
        primary_conninfo and slot (pg_rewind copied upstream's settings, trap 2)."""
        auto = self.data_dir / "postgresql.auto.conf"
        keep = _drop_settings(auto, (*_PRIMARY_ONLY, "primary_conninfo", "primary_slot_name"), write=False)
        # The password is in the conninfo as pg_basebackup -R writes it: the file is the postgres user's, 0600.
        conninfo = f"host=127.0.0.1 port={upstream.port} user={self.user} password={self._password}"
        keep += [f"primary_conninfo = '{conninfo}'", f"primary_slot_name = '{slot_name(self.region or self.name)}'"]
        auto.write_text("\n".join(keep) + "\n")
        auto.chmod(0o600)
        (self.data_dir / "standby.signal").touch()
        owner = self._owner()
        if owner is not None:
            for path in (auto, self.data_dir / "standby.signal"):
                os.chown(path, owner[0], owner[1])
