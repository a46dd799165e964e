"""The ledger's tables and roles, and setting them up on the primary (`regionflow up` calls ensure_ledger).

Money is numeric(20, 2): exact, never a float. A balance cannot go negative (a CHECK the database
enforces, not only the service). A transfer's idempotency key is unique, so a retried request can never
move money twice, whatever region it reaches. The service logs in as a rotating role (ledger_app_<n>)
that is a member of ledger_rw, which holds the privileges: rotating the password is creating a new
member and retiring the old one.
"""

from __future__ import annotations

import secrets as _secrets

from psycopg import sql

from regionflow.config import Config, Secrets
from regionflow.errors import RegionflowError
from regionflow.servers.ledger_db import LedgerNode
from regionflow.workloads.ledger.secret import LedgerSecret, read_secret, secret_path, write_secret

__all__ = ["APP_GROUP", "create_app_role", "ensure_ledger", "primary_node"]

APP_GROUP = "ledger_rw"

SCHEMA = [
    """create table if not exists accounts (
         id text primary key check (length(id) between 1 and 64),
         balance numeric(20, 2) not null check (balance >= 0),
         created_at timestamptz not null default clock_timestamp())""",
    """create table if not exists transfers (
         transfer_id uuid primary key,
         idempotency_key text not null unique check (length(idempotency_key) between 1 and 200),
         from_account text not null references accounts (id),
         to_account text not null references accounts (id),
         amount numeric(20, 2) not null check (amount > 0),
         region text not null,
         committed_at timestamptz not null default clock_timestamp(),
         check (from_account <> to_account))""",
    "create index if not exists transfers_committed_at on transfers (committed_at)",
    # What an old primary committed that never reached the new one (report.py), kept on the primary.
    """create table if not exists missing_transfers (
         transfer_id uuid primary key,
         idempotency_key text not null,
         from_account text not null,
         to_account text not null,
         amount numeric(20, 2) not null,
         region text not null,
         committed_at timestamptz,
         old_primary text not null,
         found_at timestamptz not null default clock_timestamp(),
         reapplied_at timestamptz,
         reapply_result text)""",
    f"""do $$ begin
         if not exists (select 1 from pg_roles where rolname = '{APP_GROUP}') then
           create role {APP_GROUP} nologin;
         end if;
       end $$""",
    f"grant select, insert, update on accounts, transfers to {APP_GROUP}",
    f"grant select, insert, update on missing_transfers to {APP_GROUP}",
]


def primary_node(nodes: dict[str, LedgerNode]) -> LedgerNode:
    """The node the topology starts as the primary (the one with no upstream)."""
    return next(n for n in nodes.values() if n.upstream_port is None)


def create_app_role(node: LedgerNode, version: int) -> tuple[str, str]:
    """A new login role ledger_app_<version> in ledger_rw with a fresh password, on primary node; (user,
    password). An existing role of that name gets the new password (a rotation retried after a crash)."""
    user, password = f"ledger_app_{version}", _secrets.token_urlsafe(24)
    with node.connect("ledger") as conn:
        exists = conn.execute("select 1 from pg_roles where rolname = %s", (user,)).fetchone()
        verb = "alter" if exists else "create"
        conn.execute(sql.SQL(verb + " role {} login password {}").format(sql.Identifier(user), sql.Literal(password)))
        if not exists:
            conn.execute(sql.SQL("grant {} to {}").format(sql.Identifier(APP_GROUP), sql.Identifier(user)))
    return user, password


def ensure_ledger(config: Config, secrets: Secrets) -> LedgerSecret | None:
    """On a running primary: the schema, the replication slots of its standbys, synchronous mode as
    configured, and (the first time) the service's login and the secret. None when the primary is fenced
    or down (a failover is in progress: the plan's steps own the ledger then)."""
    from regionflow.servers.topology import ledger_nodes

    nodes = ledger_nodes(config, secrets)
    primary = primary_node(nodes)
    if primary.fenced or primary.probe(2.0) is not None:
        return None
    path = secret_path(config.data_dir)
    try:
        with primary.connect("ledger") as conn, conn.transaction():
            for statement in SCHEMA:
                conn.execute(statement)  # constant DDL
        # A fenced node (an old primary waiting for its failback) is no standby: no slot holding WAL for it,
        # and synchronous commits must not wait for it.
        standbys = [r for r, n in nodes.items() if n is not primary and not n.fenced]
        for region in standbys:
            primary.ensure_slot(region)
        assert config.ledger is not None
        primary.set_synchronous(standbys[0] if config.ledger.synchronous and standbys else None)
        secret = read_secret(path)
        if secret is None:
            user, password = create_app_role(primary, 1)
            secret = LedgerSecret(version=1, primary_region=primary.region or "", host="127.0.0.1",
                                  port=primary.port, user=user, password=password)
            write_secret(path, secret)
        # An old primary that `up` brought back fenced: record what it has that the primary lacks now,
        # before anything can rewind it.
        for region, node in nodes.items():
            if node is not primary and node.fenced and node.probe(2.0) is None:
                from regionflow.workloads.ledger.missing import record_missing

                record_missing(node, primary, region)
    except Exception as exc:  # psycopg and OS errors: one line for `up`
        if isinstance(exc, RegionflowError):
            raise
        raise RegionflowError(f"cannot set up the ledger on {primary.name}: {exc}") from None
    return secret

