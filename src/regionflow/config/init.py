"""``regionflow init``: a commented regionflow.toml for two regions, the data directories and secrets."""

from __future__ import annotations

import os
import socket
from contextlib import ExitStack
from pathlib import Path

from regionflow.config.model import CONFIG_FILE, DATA_DIR, DEFAULT_REGIONS, load_config
from regionflow.config.secrets import write_secrets
from regionflow.errors import ConfigError

__all__ = ["init_project"]


def _free_ports(count: int) -> list[int]:
    """count distinct loopback ports that are free now (all held open together so they differ)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


def _q(s: str) -> str:
    """A TOML basic string."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _config_text(regions: list[tuple[str, int]], access_port: int) -> str:
    """The commented regionflow.toml for regions [(name, port), ...]; the first region is the primary."""
    primary = regions[0][0]
    lines = [
        "# regionflow topology, written by `regionflow init`.",
        "#",
        "# Relative paths and URLs are resolved against the directory holding this file:",
        "#   file://PATH     object-store directory: file:///abs/dir is absolute, file://rel/dir is relative",
        "#   sqlite:///PATH  SQLite file (SQLAlchemy's rule): sqlite:////abs/x.db is absolute,",
        "#                   sqlite:///rel/x.db is relative",
        "#   outbox://PATH   directory of .eml files, same rule as file://",
        "# Other URLs (s3://, postgresql://, etcd://, smtp://) are used as written.",
        "",
        "# The region made active when the routing control is first created. From then on the routing",
        "# control, not this key, says which region is active (a failover changes it).",
        f"primary = {_q(primary)}",
        "",
        "# Routing control: the active region and its epoch, shared by every region process.",
        f"control = {_q(f'sqlite:///{DATA_DIR}/control.db')}",
        "",
        "# Working files of the regions (outboxes, caches), logs/ and run/ (pid files).",
        f"data_dir = {_q(DATA_DIR)}",
        "",
        "# Bearer tokens (api: clients, admin: operators, replication: region to region) and the link-signing",
        "# key. Mode 0600; keep it out of version control.",
        f"secrets_file = {_q(f'{DATA_DIR}/secrets.toml')}",
        "",
        "# TLS, for regions on different machines. A listener (the access point, a region) serves https://",
        "# when its table sets tls_cert and tls_key (PEM files, both or neither); clients verify it against",
        "# tls_ca, a PEM file of CA certificates (unset: the default trust store).",
        '# tls_ca = "certs/ca.pem"',
        "",
        "# Pipeline spec (TOML or YAML). Unset: the built-in pipeline (the reference orders workload).",
        '# pipeline = "pipelines/orders.toml"',
        "",
        "# Where job-done notifications go. Unset: one outbox directory of .eml files (data_dir/outbox) that",
        "# every region delivers to; the job id is the dedupe key, so a file is notified once.",
        '# notifier = "smtp://127.0.0.1:1025"',
        "",
        "# The global access point: routes uploads to the active region (if healthy) and downloads to a",
        "# healthy region that holds the object. Clients talk to this address.",
        "[access_point]",
        'host = "127.0.0.1"',
        f"port = {access_port}",
        '# tls_cert = "certs/access-point.pem"',
        '# tls_key = "certs/access-point.key"',
        "",
        "# Replication between regions (each region pulls the other's change feed).",
        "[replication]",
        "interval = 0.2  # seconds between polls while the feed is drained",
        "batch = 500     # changes applied per pull",
        "",
        "# One [[regions]] table per region (names: lower-case letters, digits, '-').",
        "#   host, port  the region's HTTP gateway",
        "#   objects     object store: file://DIR here, or s3://bucket",
        "#   state       state store: sqlite:///FILE here, or postgresql://user@host:port/db",
        "#   workers     processes that run chunk work",
        "#   tls_cert, tls_key  PEM certificate and key: the gateway serves https:// (see tls_ca above)",
    ]
    for name, port in regions:
        lines += [
            "",
            "[[regions]]",
            f"name = {_q(name)}",
            'host = "127.0.0.1"',
            f"port = {port}",
            f"objects = {_q(f'file://{DATA_DIR}/{name}/objects')}",
            f"state = {_q(f'sqlite:///{DATA_DIR}/{name}/state.db')}",
            "workers = 2",
        ]
    return "\n".join(lines) + "\n"


def init_project(dir: Path, *, force: bool = False, base_port: int | None = None) -> Path:
    """Write dir/regionflow.toml for regions us-east-1 (primary) and us-west-2 on the embedded backends.

    Data lives under dir/.regionflow/ (one objects dir and state.db per region, control.db, logs/, run/,
    secrets.toml). Ports are base_port, base_port + 1 (the regions) and base_port + 2 (the access point),
    or free loopback ports when base_port is None. Refuses to replace an existing regionflow.toml unless
    force; an existing secrets file is kept (replacing it would invalidate tokens and links in use).
    Returns the path of the config file.
    """
    root = Path(dir).expanduser().absolute()
    target = root / CONFIG_FILE
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists (use --force to overwrite it)")
    if base_port is None:
        ports = _free_ports(3)
    else:
        if not 1 <= base_port <= 65533:
            raise ConfigError(f"base port {base_port} is out of range (1-65533: three ports from it are used)")
        ports = [base_port, base_port + 1, base_port + 2]
    regions = list(zip(DEFAULT_REGIONS, ports[:2], strict=True))
    text = _config_text(regions, ports[2])
    data = root / DATA_DIR
    try:
        for name in DEFAULT_REGIONS:
            (data / name / "objects").mkdir(parents=True, exist_ok=True)
        (data / "logs").mkdir(parents=True, exist_ok=True)
        (data / "run").mkdir(parents=True, exist_ok=True)
        ignore = data / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# regionflow data and secrets: never commit\n*\n", encoding="utf-8")
        tmp = target.with_name(f".{CONFIG_FILE}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        raise ConfigError(f"cannot initialize {root}: {exc.strerror} ({exc.filename})") from None
    config = load_config(target)  # what we wrote must load
    if not Path(config.secrets_file).exists():
        write_secrets(config.secrets_file)
    return target
