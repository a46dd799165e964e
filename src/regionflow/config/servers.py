"""The servers a topology asks `regionflow up` to run (`init --servers`): their tables in regionflow.toml."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["EtcdMemberConfig", "LedgerConfig", "PostgresServerConfig", "SeaweedFSConfig"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _port() -> int:
    return Field(strict=True, ge=1, le=65535)


class SeaweedFSConfig(_Model):
    """A SeaweedFS server (`weed mini`) that `regionflow up` runs for a region: its ports on 127.0.0.1.
    SeaweedFS also listens for gRPC on each of these ports + 10000."""

    master_port: int = _port()
    volume_port: int = _port()
    filer_port: int = _port()
    s3_port: int = _port()

    def ports(self) -> dict[str, int]:
        """Every port it listens on, by what it is for (the gRPC ones included)."""
        http = {"master": self.master_port, "volume": self.volume_port, "filer": self.filer_port, "S3": self.s3_port}
        return {**http, **{f"{k} gRPC": v + 10000 for k, v in http.items()}}


class PostgresServerConfig(_Model):
    """A PostgreSQL cluster that `regionflow up` creates (initdb) and runs for a region, on 127.0.0.1."""

    port: int = _port()


class EtcdMemberConfig(_Model):
    """One member of the etcd cluster that `regionflow up` runs for the routing control, on 127.0.0.1."""

    name: str
    client_port: int = _port()
    peer_port: int = _port()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"{v!r} is not a member name (lower-case letters, digits and '-', e.g. etcd-1)")
        return v


class LedgerConfig(_Model):
    """The ledger workload's PostgreSQL nodes that `regionflow up` runs, one per region on 127.0.0.1:
    the topology's primary region starts as the database primary, the others as its streaming standbys.
    synchronous: a commit returns once the standby has applied it (remote_apply: RPO 0, at a latency
    cost); otherwise the standby trails by its replay lag."""

    synchronous: bool = False
    ports: dict[str, int]

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: dict[str, int]) -> dict[str, int]:
        for region, port in v.items():
            if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
                raise ValueError(f"port of {region!r}: {port!r} is not a port (1-65535)")
        return v
