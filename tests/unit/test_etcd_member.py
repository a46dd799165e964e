"""EtcdMember without running it: its command line, its probe of a member that is not there, the cluster
helper. Running members are exercised by tests/contract/test_control*.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from regionflow.servers.base import MissingBinary
from regionflow.servers.etcd import EtcdMember, etcd_cluster
from regionflow.servers.ports import free_ports


def _flags(argv: list[str]) -> dict[str, str]:
    return dict(zip(argv[1::2], argv[2::2], strict=True))


def test_command_listens_on_loopback_only_with_short_election(tmp_path: Path) -> None:
    members = etcd_cluster(["etcd-1", "etcd-2", "etcd-3"], tmp_path, token="tok")
    m = members[1]
    flags = _flags(m.command())
    assert m.command()[0].endswith("etcd")
    for flag in ("--listen-client-urls", "--advertise-client-urls"):
        assert flags[flag] == m.address == f"http://127.0.0.1:{m.client_port}"
    for flag in ("--listen-peer-urls", "--initial-advertise-peer-urls"):
        assert flags[flag] == f"http://127.0.0.1:{m.peer_port}"
    assert flags["--initial-cluster"] == ",".join(f"{x.name}=http://127.0.0.1:{x.peer_port}" for x in members)
    assert (flags["--initial-cluster-token"], flags["--initial-cluster-state"]) == ("tok", "new")
    assert (flags["--heartbeat-interval"], flags["--election-timeout"]) == ("100", "1000")
    assert flags["--name"] == "etcd-2" and flags["--data-dir"].startswith(str(tmp_path / "etcd-2"))
    assert (m.kind, m.region, m.describe()["address"]) == ("etcd", None, m.address)


def test_cluster_ports_are_distinct(tmp_path: Path) -> None:
    members = etcd_cluster(["a", "b", "c"], tmp_path, token="t")
    ports = [p for m in members for p in (m.client_port, m.peer_port)]
    assert len(set(ports)) == 6
    assert all(m.cluster == members[0].cluster for m in members)
    with pytest.raises(ValueError):
        etcd_cluster(["a", "a"], tmp_path, token="t")


def test_member_must_be_in_its_cluster(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="own peer port"):
        EtcdMember("x", tmp_path, client_port=1, peer_port=2, cluster={"y": 2}, token="t")


def test_probe_of_absent_member_is_a_reason_not_an_exception(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    m = EtcdMember("x", tmp_path, client_port=port, peer_port=port + 1, cluster={"x": port + 1}, token="t")
    reason = m.probe(timeout=0.5)
    assert isinstance(reason, str) and reason


def test_missing_etcd_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    m = etcd_cluster(["x"], tmp_path, token="t")[0]
    with pytest.raises(MissingBinary, match="apt-get install etcd-server"):
        m.check_installed()
