"""`init --servers`: the topology it writes, the secrets it adds, and the checks that keep its tables
consistent with the URLs the regions open."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from regionflow.config import backends_in_use, init_project, load_config, load_secrets, write_secrets
from regionflow.config.secrets import upgrade_secrets
from regionflow.errors import ConfigError


def _servers_project(tmp_path: Path) -> Path:
    return init_project(tmp_path, servers=True)


def test_init_servers_writes_a_loadable_servers_topology(tmp_path: Path) -> None:
    cfg = load_config(_servers_project(tmp_path))
    assert cfg.control.startswith("etcd://") and len(cfg.etcd) == 3
    assert backends_in_use(cfg) == {"control": "etcd", "managed": True, "regions": {
        "us-east-1": {"objects": "s3", "state": "postgresql"}, "us-west-2": {"objects": "s3", "state": "postgresql"}}}
    ports: list[int] = [cfg.access_point.port]
    for r in cfg.regions:
        assert r.seaweedfs is not None and r.postgres is not None
        assert r.objects == "s3://batch"
        assert r.store_url == f"s3://batch?endpoint=http://127.0.0.1:{r.seaweedfs.s3_port}"
        assert r.state == f"postgresql://regionflow@127.0.0.1:{r.postgres.port}/regionflow"
        ports += list(r.ports_in_use())
    ports += [p for m in cfg.etcd for p in (m.client_port, m.peer_port)]
    assert len(ports) == len(set(ports)), "every listener (gRPC ones included) has its own port"
    secrets = load_secrets(cfg)
    assert secrets.s3_access_key and secrets.s3_secret_key and secrets.postgres_password
    assert stat.S_IMODE(Path(cfg.secrets_file).stat().st_mode) == 0o600
    text = Path(cfg.source or "").read_text()
    assert secrets.postgres_password not in text and secrets.s3_secret_key not in text


def test_embedded_init_has_no_server_secrets(tmp_path: Path) -> None:
    cfg = load_config(init_project(tmp_path))
    assert backends_in_use(cfg)["managed"] is False
    secrets = load_secrets(cfg)
    assert secrets.s3_access_key is None and secrets.postgres_password is None
    assert cfg.regions[0].store_url == cfg.regions[0].objects  # file:// stays as it is


def test_init_servers_over_an_embedded_project_keeps_the_tokens(tmp_path: Path) -> None:
    cfg = load_config(init_project(tmp_path))
    before = load_secrets(cfg)
    cfg = load_config(init_project(tmp_path, servers=True, force=True))
    after = load_secrets(cfg)
    assert after.api_token == before.api_token and after.signing_key == before.signing_key
    assert after.s3_access_key and after.postgres_password


def test_upgrade_secrets_with_servers_adds_only_the_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "secrets.toml"
    write_secrets(path)
    text = path.read_text()
    assert upgrade_secrets(path) == []
    assert sorted(upgrade_secrets(path, servers=True)) == ["postgres_password", "s3_access_key", "s3_secret_key"]
    assert path.read_text().startswith(text)
    assert upgrade_secrets(path, servers=True) == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _edit(path: Path, pattern: str, replacement: str, count: int = 1) -> None:
    text, n = re.subn(pattern, replacement, path.read_text(), count=count, flags=re.MULTILINE)
    assert n == count
    path.write_text(text)


@pytest.mark.parametrize(("pattern", "replacement", "message"), [
    (r'^objects = "s3://batch"$', 'objects = "file://.regionflow/us-east-1/objects"',
     "s3_endpoint is set but objects is not an s3:// URL"),
    (r'^s3_endpoint = "http://127.0.0.1:\d+"$', 's3_endpoint = "http://127.0.0.1:1"',
     "is not the SeaweedFS server's S3 port"),
    (r'^state = "postgresql://regionflow@127.0.0.1:\d+/regionflow"$', 'state = "postgresql://regionflow@127.0.0.1:2/x"',
     "a [regions.postgres] server on port"),
    (r'^control = "etcd://127.0.0.1:\d+,', 'control = "etcd://127.0.0.1:3,',
     "[[etcd]] members are configured, so control must be"),
    (r"^filer_port = \d+$", "filer_port = 4", None),  # becomes a duplicate below
])
def test_server_tables_must_match_the_urls(tmp_path: Path, pattern: str, replacement: str,
                                          message: str | None) -> None:
    path = _servers_project(tmp_path)
    if message is None:
        cfg = load_config(path)
        replacement = f"filer_port = {cfg.regions[1].seaweedfs.master_port}"  # type: ignore[union-attr]
        message = "(region us-west-2 SeaweedFS master) is already used by region us-east-1 SeaweedFS filer"
    _edit(path, pattern, replacement)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_grpc_port_collision_is_refused(tmp_path: Path) -> None:
    path = _servers_project(tmp_path)
    cfg = load_config(path)
    grpc = cfg.regions[0].seaweedfs.master_port + 10000  # type: ignore[union-attr]
    _edit(path, r"^port = \d+$", f"port = {grpc}")  # the access point's port
    with pytest.raises(ConfigError, match="master gRPC"):
        load_config(path)


def test_topology_servers_names_each_server_after_its_region(tmp_path: Path) -> None:
    from regionflow.servers.topology import region_servers, topology_servers

    cfg = load_config(_servers_project(tmp_path))
    secrets = load_secrets(cfg)
    servers = topology_servers(cfg, secrets)
    assert [s.name for s in servers] == ["etcd-1", "etcd-2", "etcd-3", "us-east-1-postgres", "us-east-1-seaweedfs",
                                         "us-west-2-postgres", "us-west-2-seaweedfs", "us-east-1-ledger-db",
                                         "us-west-2-ledger-db"]
    assert [s.name for s in region_servers(cfg, secrets, "us-west-2")] == ["us-west-2-postgres",
                                                                           "us-west-2-seaweedfs",
                                                                           "us-west-2-ledger-db"]
    for s in servers:
        assert Path(cfg.data_dir) in s.data_dir.parents
        assert (s.region is None) == (s.kind == "etcd")


def test_init_servers_never_gives_two_listeners_one_port(tmp_path: Path) -> None:
    # The listeners' ports and the servers' are drawn in two calls; the second must avoid the first.
    for i in range(60):
        cfg = load_config(init_project(tmp_path / str(i), servers=True))
        assert cfg.access_point.port not in {p for r in cfg.regions for p in r.ports_in_use() if p != r.port}
        assert cfg.ledger is not None and len(set(cfg.ledger.ports.values())) == 2


def test_free_ports_avoids_what_it_is_told_to(tmp_path: Path) -> None:
    import random

    from regionflow.servers.ports import GRPC_OFFSET, PORT_RANGE, free_ports

    avoid = set(range(PORT_RANGE[0], PORT_RANGE[1], 2))  # every even port
    ports = free_ports(4, with_grpc=2, rng=random.Random(1), avoid=avoid)
    assert not set(ports) & avoid and len(set(ports)) == 4
    assert not {p + GRPC_OFFSET for p in ports[:2]} & (avoid | set(ports))
