"""``regionflow init``: a commented regionflow.toml for two regions, the data directories and secrets
(and, with --auto-failover, a plan that fails over by itself once a person approves, or nobody objects)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from regionflow.config.model import CONFIG_FILE, DATA_DIR, DEFAULT_REGIONS, load_config
from regionflow.config.secrets import upgrade_secrets, write_secrets
from regionflow.errors import ConfigError
from regionflow.servers.ports import free_ports

__all__ = ["AUTO_FAILOVER_PLAN", "init_project"]

AUTO_FAILOVER_PLAN = "plans/auto-failover.yaml"  # relative to the project (next to regionflow.toml)


def _q(s: str) -> str:
    """A TOML basic string."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


ETCD_MEMBERS = ("etcd-1", "etcd-2", "etcd-3")


@dataclass
class _ServerPorts:
    """The ports `init --servers` gives one region's SeaweedFS and PostgreSQL."""

    master: int
    volume: int
    filer: int
    s3: int
    postgres: int


def _server_ports(count: int, avoid: set[int]) -> tuple[list[_ServerPorts], list[tuple[int, int]]]:
    """Free ports for count regions' servers and for the etcd members ((client, peer) each), none in avoid."""
    ports = free_ports(4 * count + count + 2 * len(ETCD_MEMBERS), with_grpc=4 * count, avoid=avoid)
    weed, rest = ports[: 4 * count], ports[4 * count:]
    regions = [_ServerPorts(weed[4 * i], weed[4 * i + 1], weed[4 * i + 2], weed[4 * i + 3], rest[i])
               for i in range(count)]
    etcd = rest[count:]
    return regions, [(etcd[2 * i], etcd[2 * i + 1]) for i in range(len(ETCD_MEMBERS))]


def _control_url(etcd: list[tuple[int, int]] | None) -> str:
    if etcd is None:
        return f"sqlite:///{DATA_DIR}/control.db"
    return "etcd://" + ",".join(f"127.0.0.1:{client}" for client, _ in etcd)


def _servers_lines(name: str, ports: _ServerPorts) -> list[str]:
    return [
        "",
        f"# The SeaweedFS server `regionflow up` runs for {name} (data in {DATA_DIR}/{name}/seaweedfs; it also",
        "# listens for gRPC on each of these ports + 10000). Remove the table to use an S3 store",
        "# run elsewhere (objects and s3_endpoint then name it).",
        "[regions.seaweedfs]",
        f"master_port = {ports.master}",
        f"volume_port = {ports.volume}",
        f"filer_port = {ports.filer}",
        f"s3_port = {ports.s3}",
        "",
        f"# The PostgreSQL cluster `regionflow up` creates and runs for {name} (data in "
        f"{DATA_DIR}/{name}/postgres,",
        "# run as the postgres OS user when regionflow runs as root). Its password is postgres_password in",
        "# the secrets file. Remove the table to use a server run elsewhere (state then names it).",
        "[regions.postgres]",
        f"port = {ports.postgres}",
    ]


def _ledger_lines(regions: list[str], ports: list[int]) -> list[str]:
    lines = ["", "# The money-transfer ledger (DESIGN §9): a PostgreSQL node per region that `regionflow up` runs",
             f"# (data in {DATA_DIR}/<region>/ledger-db, as the postgres OS user under root). {regions[0]} starts as",
             "# the database primary, the others as its streaming standbys; the region-switch plan `ledger` moves",
             "# it. synchronous = true: a transfer is acknowledged once the standby has applied it (RPO 0, at a",
             "# latency cost); false: the standby trails by its replay lag (see `regionflow status`).",
             "[ledger]", "synchronous = false", "", "[ledger.ports]"]
    return lines + [f"{_q(name)} = {port}" for name, port in zip(regions, ports, strict=True)]


def _etcd_lines(etcd: list[tuple[int, int]]) -> list[str]:
    lines = ["", "# The etcd cluster `regionflow up` runs for the routing control (data in "
             f"{DATA_DIR}/etcd/<name>). With one", "# member down the control still works; with two down it "
             "cannot be read, and the regions stop taking new work."]
    for name, (client, peer) in zip(ETCD_MEMBERS, etcd, strict=True):
        lines += ["", "[[etcd]]", f"name = {_q(name)}", f"client_port = {client}", f"peer_port = {peer}"]
    return lines


def _config_text(regions: list[tuple[str, int]], access_port: int, plan: str | None = None,
                 servers: list[_ServerPorts] | None = None, etcd: list[tuple[int, int]] | None = None,
                 ledger: list[int] | None = None) -> str:
    """The commented regionflow.toml for regions [(name, port), ...]; the first region is the primary.

    servers and etcd (from `init --servers`): each region's SeaweedFS and PostgreSQL ports and the etcd
    members' (client, peer) ports; None for the embedded backends. ledger: each region's ledger database
    port (None: no ledger)."""
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
        "# Routing control: the active region and its epoch, shared by every region process",
        "# (sqlite:///FILE on one machine, or etcd://HOST:PORT,HOST:PORT,... for an etcd cluster).",
        f"control = {_q(_control_url(etcd))}",
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
        "# Region-switch plans the regions may run (`plan run`, POST /plans/run): files in plans_dir, the",
        "# configured `plan` and the built-in plans, nothing else (plans can run shell commands).",
        '# plans_dir = "plans"',
        "",
        "# Where job-done notifications go. Unset: one outbox directory of .eml files (data_dir/outbox) that",
        "# every region delivers to; the job id is the dedupe key, so a file is notified once.",
        '# notifier = "smtp://127.0.0.1:1025"',
        "",
        "# The largest upload a region accepts (bytes, or e.g. \"512MiB\"); bigger ones get HTTP 413.",
        'max_upload_bytes = "5GiB"',
        "",
        "# The region-switch plan of failover/failback, the console and the plan's triggers. Unset: the",
        "# built-in batch plan (examples/plans/batch.yaml), or with a [ledger] the built-in ledger plan",
        "# (examples/plans/ledger.yaml: the batch steps and the database's). Neither has triggers.",
        f"plan = {_q(plan)}" if plan else '# plan = "plans/my-plan.yaml"',
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
        "interval = 0.2  # seconds between polls while the feed is drained (a quarter of it after a pull",
        "                # that caught up, so the next changes come in one pull)",
        "batch = 500     # changes applied per pull",
        "# sync: an upload is acknowledged once every other region stored it (RPO 0 for inputs). A region",
        "# that does not confirm within sync_timeout seconds is marked lagging (see `regionflow status`)",
        "# and not waited for until it caught up. async: acknowledged once the receiving region has it.",
        'uploads = "sync"',
        "sync_timeout = 2.0",
        "",
        "# One [[regions]] table per region (names: lower-case letters, digits, '-').",
        "#   host, port  the region's HTTP gateway",
        "#   objects     object store: file://DIR, or s3://BUCKET (s3_endpoint: its http(s)://host:port)",
        "#   state       state store: sqlite:///FILE, or postgresql://user@host:port/db",
        "#   workers     processes that run chunk work",
        "#   concurrent_jobs  jobs run side by side, their chunks sharing the workers (default 8)",
        "#   executor    where chunks run: processes (default: `workers` processes here), tcp://HOST:PORT",
        "#               (a Dask scheduler you run) or dask://local?workers=N (a Dask cluster the region starts)",
        "#   tls_cert, tls_key  PEM certificate and key: the gateway serves https:// (see tls_ca above)",
    ]
    for i, (name, port) in enumerate(regions):
        lines += ["", "[[regions]]", f"name = {_q(name)}", 'host = "127.0.0.1"', f"port = {port}"]
        if servers is None:
            lines += [f"objects = {_q(f'file://{DATA_DIR}/{name}/objects')}",
                      f"state = {_q(f'sqlite:///{DATA_DIR}/{name}/state.db')}", "workers = 2"]
        else:
            # Every region's store holds the access point's global bucket, so that S3 requests pass through
            # the access point unchanged (their signatures cover the path).
            lines += [f"objects = {_q('s3://batch')}",
                      f"s3_endpoint = {_q(f'http://127.0.0.1:{servers[i].s3}')}",
                      f"state = {_q(f'postgresql://regionflow@127.0.0.1:{servers[i].postgres}/regionflow')}",
                      "workers = 2", *_servers_lines(name, servers[i])]
    if etcd is not None:
        lines += _etcd_lines(etcd)
    if ledger is not None:
        lines += _ledger_lines([name for name, _ in regions], ledger)
    return "\n".join(lines) + "\n"


def init_project(dir: Path, *, force: bool = False, base_port: int | None = None,
                 auto_failover: bool = False, servers: bool = False, ledger: bool = False) -> Path:
    """Write dir/regionflow.toml for regions us-east-1 (primary) and us-west-2 on the embedded backends,
    or with servers on servers that `regionflow up` runs: a SeaweedFS (S3, bucket batch, the access point's) and
    a PostgreSQL cluster per region, and a 3-member etcd cluster for the routing control, each on its own
    free loopback ports (the secrets file then also holds the S3 keys and the PostgreSQL password).

    Data lives under dir/.regionflow/ (one objects dir and state.db per region, control.db, logs/, run/,
    secrets.toml). Ports are base_port, base_port + 1 (the regions) and base_port + 2 (the access point),
    or free loopback ports when base_port is None. Refuses to replace an existing regionflow.toml unless
    force; an existing secrets file is kept (replacing it would invalidate tokens and links in use).
    auto_failover: also write dir/plans/auto-failover.yaml (the batch plan with a "primary region down
    for 10 s" trigger and an approval step that proceeds after 120 s) and make it the configured plan.
    Returns the path of the config file.
    """
    root = Path(dir).expanduser().absolute()
    target = root / CONFIG_FILE
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists (use --force to overwrite it)")
    plan_file = root / AUTO_FAILOVER_PLAN
    if auto_failover and plan_file.exists() and not force:
        raise ConfigError(f"{plan_file} already exists (use --force to overwrite it)")
    if base_port is None:
        ports = free_ports(3)
    else:
        if not 1 <= base_port <= 65533:
            raise ConfigError(f"base port {base_port} is out of range (1-65533: three ports from it are used)")
        ports = [base_port, base_port + 1, base_port + 2]
    regions = list(zip(DEFAULT_REGIONS, ports[:2], strict=True))
    # Drawn apart from the listeners' ports: free_ports only keeps the ports of one call distinct.
    server_ports, etcd_ports = _server_ports(len(regions), set(ports)) if servers else (None, None)
    ledger = ledger or servers
    taken = set(ports) | {p for sp in server_ports or [] for p in (sp.master, sp.volume, sp.filer, sp.s3, sp.postgres)}
    taken |= {p for pair in etcd_ports or [] for p in pair}
    taken |= {p + 10000 for sp in server_ports or [] for p in (sp.master, sp.volume, sp.filer, sp.s3)}
    ledger_ports = free_ports(len(regions), avoid=taken) if ledger else None
    text = _config_text(regions, ports[2], AUTO_FAILOVER_PLAN if auto_failover else None, server_ports, etcd_ports,
                        ledger_ports)
    data = root / DATA_DIR
    try:
        for name in DEFAULT_REGIONS:
            (data / name / ("" if servers else "objects")).mkdir(parents=True, exist_ok=True)
        (data / "logs").mkdir(parents=True, exist_ok=True)
        (root / "plans").mkdir(exist_ok=True)  # the default plans_dir
        (data / "run").mkdir(parents=True, exist_ok=True)
        ignore = data / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# regionflow data and secrets: never commit\n*\n", encoding="utf-8")
        if auto_failover:
            plan_file.parent.mkdir(parents=True, exist_ok=True)
            template = resources.files("regionflow.switch").joinpath("plans/auto-failover.yaml")
            plan_file.write_text(template.read_text(encoding="utf-8"), encoding="utf-8")
        tmp = target.with_name(f".{CONFIG_FILE}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        raise ConfigError(f"cannot initialize {root}: {exc.strerror} ({exc.filename})") from None
    config = load_config(target)  # what we wrote must load
    if not Path(config.secrets_file).exists():
        write_secrets(config.secrets_file, servers=servers, ledger=ledger)
    elif servers or ledger:
        # keep the tokens in use, add the servers' and the ledger's keys
        upgrade_secrets(config.secrets_file, servers=servers, ledger=ledger)
    return target
