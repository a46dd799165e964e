"""Real 3-member etcd clusters for the tests, run by the same EtcdMember and runner as `regionflow up`.

``etcd_shared`` (session-scoped, imported by tests/conftest.py) is one cluster that tests share, each
under a key of its own; tests that stop members use ``running_cluster`` for a cluster of their own.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from regionflow.polling import poll_until
from regionflow.servers.etcd import EtcdMember, etcd_cluster
from regionflow.servers.runner import server_alive, start_server, stop_server, wait_servers_healthy

NAMES = ("etcd-1", "etcd-2", "etcd-3")
START_TIMEOUT = 60.0  # 3 members are healthy in ~1-2 s; generous for a loaded CI machine
ETCDCTL_TIMEOUT = 30.0  # the subprocess limit; etcdctl's own limits (dial 2 s, command 5 s) are inside it


class EtcdCluster:
    """Three members on free loopback ports under root; start/stop them one by one or all together."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.run_dir = root / "run"
        self.log_dir = root / "logs"
        self.members = etcd_cluster(list(NAMES), root / "data", token=f"rf-test-{uuid.uuid4().hex[:8]}")

    def member(self, name: str) -> EtcdMember:
        """The member called name."""
        return next(m for m in self.members if m.name == name)

    @property
    def endpoints(self) -> str:
        """host:port,host:port,... of the client URLs (the etcd:// URL's and etcdctl's form)."""
        return ",".join(m.address.removeprefix("http://") for m in self.members)

    def url(self, prefix: str | None = None) -> str:
        """An etcd:// control URL, under a fresh key prefix unless one is given."""
        return f"etcd://{self.endpoints}/{prefix or 't-' + uuid.uuid4().hex[:12]}"

    def running(self) -> list[EtcdMember]:
        """The members whose process is alive."""
        return [m for m in self.members if server_alive(self.run_dir, m.name)]

    def start(self, *names: str) -> None:
        """Start the named members (all stopped ones by default) and wait until every running one is healthy."""
        chosen = [self.member(n) for n in names] if names else [m for m in self.members if m not in self.running()]
        procs = [start_server(m, self.run_dir, self.log_dir) for m in chosen if m not in self.running()]
        if procs:
            wait_servers_healthy(procs, timeout=START_TIMEOUT)

    def kill(self, name: str) -> None:
        """SIGKILL a member (no clean shutdown, as when its machine dies)."""
        stop_server(self.run_dir, name, kill=True)

    def stop_all(self) -> None:
        """Stop every member (SIGTERM, then SIGKILL after a while); safe to call more than once."""
        for m in self.members:
            stop_server(self.run_dir, m.name, timeout=15.0)

    def status(self, member: EtcdMember) -> dict | None:
        """The member's /v3/maintenance/status answer, or None when it does not answer."""
        try:
            resp = httpx.post(f"{member.address}/v3/maintenance/status", json={}, timeout=1.0)
            return resp.json() if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def leader(self) -> EtcdMember | None:
        """The running member that says it is the leader, if any."""
        for m in self.running():
            st = self.status(m)
            if st and st.get("leader") and st["leader"] == st.get("header", {}).get("member_id"):
                return m
        return None

    def wait_leader(self, timeout: float = 20.0) -> EtcdMember:
        """The leader, once there is one."""
        return poll_until(self.leader, timeout=timeout, interval=0.05, what="an etcd leader")

    def ensure_all_up(self) -> None:
        """Restart whatever a previous test stopped and wait for a healthy cluster with a leader."""
        self.start()
        poll_until(lambda: all(m.probe() is None for m in self.members), timeout=START_TIMEOUT, interval=0.1,
                   what="every etcd member to be healthy")
        self.wait_leader()

    def etcdctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``etcdctl --endpoints=<all members> args`` (v3 API) and return its result."""
        env = {**os.environ, "ETCDCTL_API": "3"}
        return subprocess.run(["etcdctl", f"--endpoints={self.endpoints}", "--command-timeout=5s", *args],
                              capture_output=True, text=True, env=env, timeout=ETCDCTL_TIMEOUT, check=False)


@contextmanager
def running_cluster(root: Path) -> Iterator[EtcdCluster]:
    """A started 3-member cluster under root, stopped on exit (also when starting it failed)."""
    cluster = EtcdCluster(root)
    try:
        cluster.start()
        cluster.wait_leader()
        yield cluster
    finally:
        cluster.stop_all()


@pytest.fixture(scope="session")
def etcd_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One 3-member cluster for the whole session; tests use their own key (EtcdCluster.url())."""
    with running_cluster(tmp_path_factory.mktemp("etcd-shared")) as cluster:
        yield cluster
