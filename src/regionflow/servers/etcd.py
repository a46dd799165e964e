"""EtcdMember: one member of the 3-member etcd cluster that holds the routing control (control/etcd.py).

Every member listens on 127.0.0.1 only, for clients and for its peers. The cluster is described once,
by the ``--initial-cluster*`` flags of the first start; etcd records the membership in the data dir and
ignores those flags on a restart, so the same command() starts a fresh member and restarts an old one.
Heartbeat 100 ms and election timeout 1000 ms (etcd's defaults are for real networks; on loopback a
shorter election makes a leader's death cost about 1-2 s instead of several).

Measured on a 2-core machine (start_server x3 + wait_servers_healthy): 3 fresh members are healthy in
1.1-2.9 s, a restart on their data in 0.3-1.2 s, and they stop on SIGTERM in ~0.2 s.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from regionflow.servers.base import ManagedServer, find_binary
from regionflow.servers.ports import free_ports

__all__ = ["HEARTBEAT_MS", "ELECTION_MS", "EtcdMember", "etcd_cluster"]

HEARTBEAT_MS = 100
ELECTION_MS = 1000
_HINT = "apt-get install etcd-server (`make services` installs it)"


class EtcdMember(ManagedServer):
    """One etcd member on loopback; ``cluster`` maps every member's name (this one's too) to its peer port."""

    kind = "etcd"
    region = None

    def __init__(self, name: str, data_dir: Path, *, client_port: int, peer_port: int, cluster: dict[str, int],
                 token: str) -> None:
        if cluster.get(name) != peer_port:
            raise ValueError(f"cluster must map {name!r} to its own peer port {peer_port}")
        self.name = name
        self.data_dir = Path(data_dir)
        self.client_port = client_port
        self.peer_port = peer_port
        self.cluster = dict(cluster)
        self.token = token

    @property
    def address(self) -> str:
        """The client URL (the v3 JSON gateway answers there too)."""
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        """The URL the other members reach this one at."""
        return f"http://127.0.0.1:{self.peer_port}"

    def prepare(self) -> None:
        """Create the parent of the data dir; etcd itself creates and fills the data dir on first start."""
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        """etcd in the foreground; on a restart (data dir exists) etcd ignores the initial-cluster flags."""
        etcd = find_binary("etcd", hint=_HINT)
        initial = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in sorted(self.cluster.items()))
        return [
            etcd,
            "--name", self.name,
            # A subdirectory: prepare() makes data_dir, and etcd wants to own (and chmod 700) its own.
            "--data-dir", str(self.data_dir / "member-data"),
            "--listen-client-urls", self.address,
            "--advertise-client-urls", self.address,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial,
            "--initial-cluster-token", self.token,
            "--initial-cluster-state", "new",
            "--heartbeat-interval", str(HEARTBEAT_MS),
            "--election-timeout", str(ELECTION_MS),
            # No metrics or pprof listener beyond the client URL; keep the logs readable.
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]

    def probe(self, timeout: float = 1.0) -> str | None:
        """None when GET /health says {"health": "true"} (the member sees a leader and has a quorum)."""
        try:
            resp = httpx.get(f"{self.address}/health", timeout=timeout)
        except httpx.HTTPError as exc:
            detail = (str(exc).strip().splitlines() or [""])[0]
            return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        try:
            health = json.loads(resp.text).get("health")
        except (ValueError, AttributeError):
            return f"HTTP {resp.status_code}: not JSON"
        if resp.status_code == 200 and health in ("true", True):
            return None
        return f"HTTP {resp.status_code}: health {health!r}"

    def describe(self) -> dict[str, object]:
        """ManagedServer.describe plus the peer URL."""
        return {**super().describe(), "peer_url": self.peer_url}


def etcd_cluster(names: list[str], data_root: Path, token: str) -> list[EtcdMember]:
    """Members named names (data under data_root/<name>) on free loopback ports, forming one cluster.

    The ports are free when chosen, not reserved: start the members soon after."""
    if len(set(names)) != len(names) or not names:
        raise ValueError("etcd_cluster needs distinct member names")
    ports = free_ports(2 * len(names))
    peers = {name: ports[2 * i + 1] for i, name in enumerate(names)}
    return [EtcdMember(name, Path(data_root) / name, client_port=ports[2 * i], peer_port=peers[name],
                       cluster=peers, token=token) for i, name in enumerate(names)]
