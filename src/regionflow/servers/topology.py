"""The servers a topology asks `regionflow up` to run, built from regionflow.toml and the secrets.

Each region's [regions.seaweedfs] and [regions.postgres] tables become a SeaweedFS and a PostgresServer
named after the region (``us-east-1-seaweedfs``, ``us-east-1-postgres``); the [[etcd]] members become
EtcdMembers of one cluster. Data lives at fixed places under data_dir: ``<region>/seaweedfs``,
``<region>/postgres`` and ``etcd/<member>``. With a [ledger] table each region also has a ledger database
node (``<region>-ledger-db``, data in ``<region>/ledger-db``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from regionflow.config import Config, Secrets
from regionflow.errors import ConfigError
from regionflow.servers.base import ManagedServer

if TYPE_CHECKING:
    from regionflow.servers.ledger_db import LedgerNode

__all__ = ["ledger_nodes", "region_servers", "topology_servers"]


def _needs(secrets: Secrets, *keys: str) -> None:
    absent = [k for k in keys if getattr(secrets, k) is None]
    if absent:
        raise ConfigError(f"the secrets file has no {', '.join(absent)}, which the servers of this topology "
                          "need: run `regionflow init --upgrade-secrets --servers` (or --ledger) to add them")


def topology_servers(config: Config, secrets: Secrets) -> list[ManagedServer]:
    """Every server `up` runs for this topology, in start order: etcd members, then per region its
    PostgreSQL and SeaweedFS. Empty for a topology on the embedded backends or on servers run elsewhere."""
    data = Path(config.data_dir)
    servers: list[ManagedServer] = []
    if config.etcd:
        from regionflow.servers.etcd import EtcdMember

        # Members of another project's cluster must not join this one: the token is unique per project.
        token = "regionflow-" + hashlib.sha256(str(data).encode()).hexdigest()[:12]
        cluster = {m.name: m.peer_port for m in config.etcd}
        servers += [EtcdMember(m.name, data / "etcd" / m.name, client_port=m.client_port, peer_port=m.peer_port,
                               cluster=cluster, token=token) for m in config.etcd]
    for r in config.regions:
        if r.postgres:
            from regionflow.servers.postgres import PostgresServer

            _needs(secrets, "postgres_password")
            url = make_url(r.state)
            servers.append(PostgresServer(f"{r.name}-postgres", r.name, data / r.name / "postgres",
                                          port=r.postgres.port, password=secrets.postgres_password or "",
                                          user=url.username or "regionflow", database=url.database or "regionflow"))
        if r.seaweedfs:
            from regionflow.servers.seaweedfs import SeaweedFS

            _needs(secrets, "s3_access_key", "s3_secret_key")
            sw = r.seaweedfs
            servers.append(SeaweedFS(f"{r.name}-seaweedfs", r.name, data / r.name / "seaweedfs",
                                     master_port=sw.master_port, volume_port=sw.volume_port,
                                     filer_port=sw.filer_port, s3_port=sw.s3_port,
                                     access_key=secrets.s3_access_key or "", secret_key=secrets.s3_secret_key or "",
                                     bucket=r.objects[len("s3://"):].split("?", 1)[0].split("/", 1)[0]))
    if config.ledger:
        servers += ledger_nodes(config, secrets).values()
    return servers


def ledger_nodes(config: Config, secrets: Secrets) -> dict[str, LedgerNode]:
    """The ledger's database node of every region, by region. The primary is the one the ledger secret
    names (the topology's primary before the ledger was first set up); the others are its standbys,
    copied from it with pg_basebackup when they have no data yet."""
    from regionflow.servers.ledger_db import LedgerNode
    from regionflow.workloads.ledger.secret import read_secret, secret_path

    assert config.ledger is not None
    _needs(secrets, "ledger_password")
    secret = read_secret(secret_path(config.data_dir))
    primary = secret.primary_region if secret and secret.primary_region in config.ledger.ports else config.primary
    data = Path(config.data_dir)
    nodes: dict[str, LedgerNode] = {}
    for r in config.regions:
        upstream = None if r.name == primary else primary
        nodes[r.name] = LedgerNode(
            f"{r.name}-ledger-db", r.name, data / r.name / "ledger-db", port=config.ledger.ports[r.name],
            password=secrets.ledger_password or "", upstream_port=config.ledger.ports[upstream] if upstream else None,
            upstream_name=f"{upstream}-ledger-db" if upstream else None, initialized=secret is not None)
    return nodes


def region_servers(config: Config, secrets: Secrets, region: str) -> list[ManagedServer]:
    """The servers that belong to one region (what a regional outage takes down with it)."""
    config.region(region)  # ConfigError for an unknown name
    return [s for s in topology_servers(config, secrets) if s.region == region]
