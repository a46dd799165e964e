"""The ledger's database runbook: what the plan steps (steps.py), `up` and the CLI do to the nodes.

failover (unplanned, the standby becomes the primary; the old primary is fenced), switchover (planned,
zero loss: writes held, the standby catches up to the primary's last LSN, then the roles swap and the old
primary follows with pg_rewind), rotate (a new login for the service, the old one revoked), and the
missing-transaction report of a fenced old primary (missing.py) before it is rewound.

Every change to who is primary goes through the secret: it is written before the roles change with
writes held (writable = false) and after, naming the new primary, so no region writes in between.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import httpx
from psycopg import sql

from regionflow.api import routes
from regionflow.config import Config, Secrets
from regionflow.errors import RegionflowError
from regionflow.polling import PollTimeout, poll_until
from regionflow.servers.ledger_db import LedgerNode
from regionflow.servers.runner import server_alive, start_server, stop_server, wait_servers_healthy
from regionflow.workloads.ledger.schema import APP_GROUP, create_app_role
from regionflow.workloads.ledger.secret import LedgerSecret, read_secret, secret_path, write_secret

__all__ = ["LedgerError", "LedgerOps"]

START_TIMEOUT = 120.0
# The service's logins: every role that is a member of the group holding the ledger's privileges.
_APP_ROLES = ("select r.rolname from pg_roles r join pg_auth_members m on m.member = r.oid "
              "join pg_roles g on g.oid = m.roleid where g.rolname = %s")


class LedgerError(RegionflowError):
    """A database step could not do its part; the message says what and where."""


class LedgerOps:
    """The ledger's nodes of one topology and what can be done to them (runs in any region process or
    the CLI, on the machine that runs the nodes)."""

    def __init__(self, config: Config, secrets: Secrets):
        self.config = config
        self.secrets = secrets
        self.run_dir = Path(config.data_dir) / "run"
        self.log_dir = Path(config.data_dir) / "logs"
        self.secret_file = secret_path(config.data_dir)

    # -- what is where ----------------------------------------------------------------------------
    def nodes(self) -> dict[str, LedgerNode]:
        from regionflow.servers.topology import ledger_nodes

        return ledger_nodes(self.config, self.secrets)

    def secret(self) -> LedgerSecret:
        secret = read_secret(self.secret_file)
        if secret is None:
            raise LedgerError("the ledger is not set up yet (no database secret): run `regionflow up` first")
        return secret

    def _write(self, secret: LedgerSecret, **changes: Any) -> LedgerSecret:
        new = secret.model_copy(update={"version": secret.version + 1, **changes})
        write_secret(self.secret_file, new)
        return new

    def running(self, node: LedgerNode) -> bool:
        return server_alive(self.run_dir, node.name)

    def start(self, node: LedgerNode) -> None:
        """Start node unless it runs, and wait until it answers (over its socket when fenced)."""
        if not self.running(node):
            proc = start_server(node, self.run_dir, self.log_dir)
            wait_servers_healthy([proc], timeout=START_TIMEOUT)

    def stop(self, node: LedgerNode, *, kill: bool = False) -> bool:
        return stop_server(self.run_dir, node.name, kill=kill, stop_signal=node.stop_signal)

    # -- holding writes ---------------------------------------------------------------------------
    def _hold_writes(self, node: LedgerNode) -> str:
        """Make a running primary refuse new writes (read-only by default, the service's sessions ended);
        its WAL position after the last write."""
        with node.connect() as conn:
            conn.execute("alter system set default_transaction_read_only = on")
            conn.execute("select pg_reload_conf()")

        def new_sessions_read_only() -> bool:  # the postmaster has read the file: new backends inherit it
            with node.connect() as probe:
                row = probe.execute("show default_transaction_read_only").fetchone()
                return bool(row and row[0] == "on")

        poll_until(new_sessions_read_only, timeout=10.0, interval=0.02, what=f"{node.name} to turn read-only")
        with node.connect() as conn:
            # Backends read the reload at their next statement; ending the service's sessions makes sure
            # no transaction begun before the reload commits after it.
            conn.execute("select pg_terminate_backend(pid) from pg_stat_activity where pid <> pg_backend_pid() "
                         f"and usename in ({_APP_ROLES})", (APP_GROUP,))
            # Resetting the file now (not the running server) keeps the setting out of later starts.
            conn.execute("alter system reset default_transaction_read_only")
            row = conn.execute("select pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        return str(row[0])

    def _release_writes(self, node: LedgerNode) -> None:
        with contextlib.suppress(Exception), node.connect() as conn:
            conn.execute("alter system reset default_transaction_read_only")
            conn.execute("select pg_reload_conf()")

    # -- failover ---------------------------------------------------------------------------------
    def failover(self, target: str, *, max_wait: float, timeout: float, practice: bool = False) -> dict[str, Any]:
        """Make target's node the primary. A reachable old primary first has its writes held and the
        standby is given max_wait seconds to replay them (nothing lost then); it is fenced and stopped
        either way, so it takes no more writes. The secret then names target."""
        secret = self.secret()
        nodes = self.nodes()
        new, old_region = nodes[target], secret.primary_region
        old = nodes.get(old_region)
        if practice:
            return {"would_promote": target, "current_primary": old_region, "standby_reachable": new.probe(2) is None}
        if new.fenced:
            raise LedgerError(f"{new.name} is fenced (an old primary with history the primary lacks): fail back "
                              "with the switchover, which records its missing transfers and rewinds it first")
        if new.probe(2.0) is not None:
            if not self.running(new):
                self.start(new)
            else:
                raise LedgerError(f"{new.name} does not answer: {new.probe(2.0)}")
        if old_region == target and new.status().role == "primary":
            return {"primary": target, "changed": False, "secret_version": secret.version}
        out: dict[str, Any] = {"from": old_region, "to": target}
        held = self._write(secret, writable=False)
        started = time.monotonic()
        if old is not None:
            out["old_primary"] = self._fence(old, new, max_wait, reason=f"failed over to {target}")
        status = new.promote(timeout=max(1.0, timeout - (time.monotonic() - started)))
        new.set_synchronous(None)  # its old primary is fenced: waiting for it would stop every commit
        final = self._write(held, primary_region=target, host="127.0.0.1", port=new.port, writable=True)
        out.update({"promoted": new.name, "timeline": status.timeline, "lsn": status.current_lsn,
                    "secret_version": final.version, "changed": True,
                    "promote_seconds": round(time.monotonic() - started, 3)})
        return out

    def _fence(self, old: LedgerNode, new: LedgerNode, max_wait: float, reason: str) -> dict[str, Any]:
        reachable = not old.fenced and old.probe(2.0) is None
        out: dict[str, Any] = {"name": old.name, "reachable": reachable}
        if reachable:
            try:
                lsn = self._hold_writes(old)
                out["last_lsn"] = lsn
                new.wait_replayed(lsn, max_wait)
                out["standby_caught_up"] = True
            except Exception as exc:  # the old primary may die mid-way: fence it anyway
                out["standby_caught_up"] = False
                out["hold_error"] = str(exc)[:300]
        old.fence(reason)
        out["fenced"] = True
        # A node that does not answer may still run (hung, paused): it must not come back by itself.
        out["stopped"] = self.stop(old, kill=not reachable)
        return out

    # -- the missing-transaction report -----------------------------------------------------------
    def record_missing(self, old_region: str) -> dict[str, Any]:
        """Start the fenced old primary of old_region (no TCP) if needed, read the transfers it committed
        that the primary does not have, and record them on the primary (missing_transfers)."""
        from regionflow.workloads.ledger.missing import record_missing

        nodes = self.nodes()
        old, primary = nodes[old_region], nodes[self.secret().primary_region]
        if not old.fenced:
            raise LedgerError(f"{old.name} is not fenced: it has no unreplicated history to report")
        self.start(old)
        return record_missing(old, primary, old_region)

    def reapply_missing(self) -> dict[str, Any]:
        from regionflow.workloads.ledger.missing import reapply_missing

        secret = self.secret()
        return reapply_missing(self.nodes()[secret.primary_region])

    # -- rejoin and switchover --------------------------------------------------------------------
    def rejoin(self, region: str, upstream_region: str, timeout: float) -> dict[str, Any]:
        """Turn region's node into a streaming standby of upstream_region's: stop it, pg_rewind onto the
        upstream's timeline, follow it through its own slot, unfence, start, wait until it caught up."""
        nodes = self.nodes()
        node, upstream = nodes[region], nodes[upstream_region]
        was_fenced = node.fenced
        self.stop(node)
        if not (node.data_dir / "PG_VERSION").exists():
            raise LedgerError(f"{node.name} has no data directory to rewind ({node.data_dir})")
        rewind = node.rewind(upstream)
        node.follow(upstream)
        upstream.ensure_slot(region)
        node.unfence()
        self.start(node)
        lsn = upstream.status().current_lsn
        if lsn:
            node.wait_replayed(lsn, timeout)
        return {"node": node.name, "was_fenced": was_fenced, "upstream": upstream.name,
                "rewind": rewind.strip().splitlines()[-1] if rewind.strip() else "", "caught_up_to": lsn}

    def switchover(self, target: str, *, timeout: float, practice: bool = False) -> dict[str, Any]:
        """Planned, zero loss: make target's node the primary. A fenced target (the old primary of an
        unplanned failover) has its missing transfers recorded first, then is rewound and rejoins as a
        standby; writes are held, target replays the primary's last LSN, the roles swap, and the old
        primary follows target."""
        secret = self.secret()
        nodes = self.nodes()
        current = secret.primary_region
        node = nodes[target]
        if practice:
            return {"would_switch": f"{current} -> {target}", "target_fenced": node.fenced}
        if current == target and not node.fenced and node.probe(2.0) is None and node.status().role == "primary":
            return {"primary": target, "changed": False, "secret_version": secret.version}
        deadline = time.monotonic() + timeout
        out: dict[str, Any] = {"from": current, "to": target}
        primary = nodes[current]
        if primary.probe(2.0) is not None:
            raise LedgerError(f"the current primary {primary.name} does not answer ({primary.probe(2.0)}): a "
                              "switchover needs it; run a failover instead")
        if node.fenced:
            out["missing"] = self.record_missing(target)
            out["rejoin"] = self.rejoin(target, current, max(1.0, deadline - time.monotonic()))
        elif not self.running(node):
            self.start(node)
        held = self._write(secret, writable=False)
        try:
            lsn = self._hold_writes(primary)
            node.wait_replayed(lsn, max(1.0, deadline - time.monotonic()))
        except BaseException:
            self._release_writes(primary)
            self._write(held, writable=True)
            raise
        out["switch_lsn"] = lsn
        self.stop(primary)  # a clean shutdown: it streams its last WAL to the standby before it exits
        status = node.promote(timeout=max(1.0, deadline - time.monotonic()))
        out["promoted"] = {"node": node.name, "timeline": status.timeline}
        # From here on target is the primary: the secret says so before anything else can fail.
        final = self._write(held, primary_region=target, host="127.0.0.1", port=node.port, writable=True)
        out["old_primary"] = self.rejoin(current, target, max(1.0, deadline - time.monotonic()))
        assert self.config.ledger is not None
        node.set_synchronous(current if self.config.ledger.synchronous else None)
        out["secret_version"] = final.version
        out["changed"] = True
        return out

    # -- rotation ---------------------------------------------------------------------------------
    def rotate(self, *, wait: float, practice: bool = False) -> dict[str, Any]:
        """A new login for the ledger service on the primary, the secret updated, the regions seen on the
        new version (at most wait seconds each; one that does not answer reads the file when it is back),
        then the old login revoked and its sessions ended."""
        secret = self.secret()
        primary = self.nodes()[secret.primary_region]
        if practice:
            return {"would_rotate": secret.user, "primary": primary.name}
        version = secret.version + 1
        user, password = create_app_role(primary, version)
        new = secret.model_copy(update={"version": version, "user": user, "password": password})
        write_secret(self.secret_file, new)
        confirmed = self._regions_on(version, wait)
        with primary.connect("ledger") as conn:
            for role in [r[0] for r in conn.execute(f"{_APP_ROLES} and r.rolname <> %s and r.rolcanlogin",
                                                    (APP_GROUP, user)).fetchall()]:
                conn.execute(sql.SQL("alter role {} nologin password null").format(sql.Identifier(role)))
                conn.execute("select pg_terminate_backend(pid) from pg_stat_activity where usename = %s", (role,))
        return {"old_user": secret.user, "new_user": user, "secret_version": version, "regions": confirmed}

    def _regions_on(self, version: int, wait: float) -> dict[str, Any]:
        """Each region's answer to "which secret do you run on": confirmed once it reports version; a region
        that does not answer at all is not waited for (it reads the file when it starts)."""
        seen: dict[str, Any] = {}
        verify = self.config.tls_verify()
        with httpx.Client(timeout=2.0, verify=verify,
                          headers={"authorization": f"Bearer {self.secrets.api_token}"}) as client:
            for r in self.config.regions:
                answer: dict[str, Any] = {}

                def on_version(url: str = r.url, answer: dict[str, Any] = answer) -> bool:
                    try:
                        got = client.get(url + routes.LEDGER_STATUS).json().get("secret_version")
                    except (httpx.HTTPError, ValueError, AttributeError) as exc:
                        answer["down"] = type(exc).__name__
                        return True
                    answer.pop("down", None)
                    return isinstance(got, int) and got >= version

                try:
                    poll_until(on_version, timeout=wait, interval=0.05, what=f"{r.name} to load the new secret")
                    seen[r.name] = (f"not answering ({answer['down']}): it reads the secret when it starts"
                                    if "down" in answer else "confirmed")
                except PollTimeout:
                    seen[r.name] = f"unconfirmed: still on an older secret after {wait:g}s"
        return seen
