"""The topology model of ``regionflow.toml`` (pydantic) and load_config.

Relative locations. Paths and URLs in a regionflow.toml may be relative; load_config resolves them
against the directory that holds the file, so a project works from any working directory:

- plain paths (``pipeline``, ``data_dir``, ``secrets_file``): relative unless they start with ``/``
  (``~`` is expanded).
- ``file://PATH`` and ``outbox://PATH``: everything after ``//`` is a path (never a host):
  ``file:///abs/dir`` is absolute, ``file://.regionflow/us-east-1/objects`` is relative.
- ``sqlite:///PATH`` (also ``sqlite+driver:///``): SQLAlchemy's rule, ``sqlite:///rel/state.db`` is
  relative and ``sqlite:////abs/state.db`` absolute; a query string is kept.
- other URLs (``s3://``, ``postgresql://``, ``etcd://``, ``smtp://``) are used as written.
- TLS files (``tls_ca``, each listener's ``tls_cert`` and ``tls_key``) are plain paths.

After load_config every path is absolute: ``file:///abs/...``, ``sqlite:////abs/...``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from regionflow.config.servers import EtcdMemberConfig, LedgerConfig, PostgresServerConfig, SeaweedFSConfig
from regionflow.config.tls import Verify, check_ca_file, client_verify, server_files
from regionflow.config.units import parse_size
from regionflow.errors import ConfigError
from regionflow.executor.url import check_region_executor
from regionflow.workloads.batch.pipeline import Pipeline, default_pipeline
from regionflow.workloads.batch.pipeline import load_pipeline as _load_pipeline_file

__all__ = [
    "CONFIG_FILE",
    "DATA_DIR",
    "DEFAULT_REGIONS",
    "AccessPointConfig",
    "CanaryConfig",
    "Config",
    "RegionConfig",
    "backends_in_use",
    "ReplicationConfig",
    "load_config",
    "resolve_path",
    "resolve_url",
]

CONFIG_FILE = "regionflow.toml"
DATA_DIR = ".regionflow"
DEFAULT_REGIONS = ("us-east-1", "us-west-2")

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_SQLITE = re.compile(r"^(sqlite(?:\+[A-Za-z0-9_]+)?):///(.*)$", re.DOTALL)

# Schemes each kind of URL may use (the adapters themselves check what is implemented).
_OBJECT_SCHEMES = ("file", "s3")
_STATE_SCHEMES = ("sqlite", "postgresql", "postgres")
_CONTROL_SCHEMES = ("sqlite", "etcd")
_NOTIFIER_SCHEMES = ("outbox", "smtp")


# ---------------------------------------------------------------------------------------------- paths


def resolve_path(path: str, base: Path) -> str:
    """An absolute path: path itself if absolute (after ``~`` expansion), else base / path."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else Path(base, p).absolute())


def resolve_url(url: str, base: Path) -> str:
    """Make the path in a file://, outbox:// or sqlite:/// URL absolute against base; others unchanged."""
    for scheme in ("file", "outbox"):
        prefix = f"{scheme}://"
        if url.startswith(prefix):
            return prefix + resolve_path(url[len(prefix):], base)
    m = _SQLITE.match(url)
    if m:
        scheme, rest = m.groups()
        path, sep, query = rest.partition("?")
        if not path or path == ":memory:" or path.startswith("file:"):
            return url
        return f"{scheme}:///{resolve_path(path, base)}{sep}{query}"
    return url


def _scheme(url: str) -> str:
    head, sep, _ = url.partition("://")
    return head.split("+", 1)[0].lower() if sep else ""


def _check_url(url: str, schemes: tuple[str, ...], example: str) -> str:
    if _scheme(url) not in schemes:
        expected = ", ".join(f"{s}://" for s in schemes)
        raise ValueError(f"{url!r} is not a supported URL (expected {expected}; e.g. {example})")
    return url


# ---------------------------------------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _port() -> Any:
    return Field(strict=True, ge=1, le=65535)


def _http_url(host: str, port: int, tls: bool = False) -> str:
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


class _Listener(_Model):
    """An HTTP listener: its address and, for TLS, the PEM certificate (chain) and key it serves."""

    host: str = "127.0.0.1"
    port: int = _port()
    tls_cert: str | None = Field(default=None, min_length=1)
    tls_key: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _tls_pair(self) -> _Listener:
        if (self.tls_cert is None) != (self.tls_key is None):
            given, absent = ("tls_cert", "tls_key") if self.tls_cert is not None else ("tls_key", "tls_cert")
            raise ValueError(f"{given} is set without {absent}: set both (TLS) or neither (plain HTTP)")
        return self

    @property
    def tls(self) -> bool:
        """Whether this listener serves TLS (https://)."""
        return self.tls_cert is not None

    def _resolved(self, base: Path) -> dict[str, Any]:
        return {"tls_cert": resolve_path(self.tls_cert, base) if self.tls_cert else None,
                "tls_key": resolve_path(self.tls_key, base) if self.tls_key else None}


class RegionConfig(_Listener):
    """One region: its gateway address (and TLS files), object store, state store and worker count, and
    the servers `regionflow up` runs for it (seaweedfs, postgres; absent for servers run elsewhere)."""

    name: str
    objects: str  # file:///abs/dir or s3://bucket
    state: str  # sqlite:////abs/state.db or postgresql://...
    workers: int = Field(default=2, strict=True, ge=1)
    # Jobs side by side, sharing the workers: a small file is mostly per-job steps (state writes, merge).
    concurrent_jobs: int = Field(default=8, strict=True, ge=1)
    # Where chunks run: "processes" (a pool of `workers` on this machine), a Dask scheduler
    # ("tcp://HOST:PORT") or a Dask cluster the region starts ("dask://local?workers=N").
    executor: str = Field(default="processes", min_length=1)
    s3_endpoint: str | None = Field(default=None, min_length=1)  # http(s)://host:port of an s3:// store
    seaweedfs: SeaweedFSConfig | None = None
    postgres: PostgresServerConfig | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"{v!r} is not a region name (lower-case letters, digits and '-', e.g. us-east-1)")
        return v

    @field_validator("objects")
    @classmethod
    def _objects(cls, v: str) -> str:
        return _check_url(v, _OBJECT_SCHEMES, "file://.regionflow/us-east-1/objects")

    @field_validator("executor")
    @classmethod
    def _executor(cls, v: str) -> str:
        return check_region_executor(v)

    @field_validator("state")
    @classmethod
    def _state(cls, v: str) -> str:
        return _check_url(v, _STATE_SCHEMES, "sqlite:///.regionflow/us-east-1/state.db")

    @model_validator(mode="after")
    def _servers_match(self) -> RegionConfig:
        if self.s3_endpoint is not None:
            if not self.objects.startswith("s3://"):
                raise ValueError("s3_endpoint is set but objects is not an s3:// URL")
            if not re.match(r"^https?://[^/?#]+/?$", self.s3_endpoint):
                raise ValueError(f"s3_endpoint {self.s3_endpoint!r} is not http(s)://host:port")
        if self.seaweedfs is not None:
            if not self.objects.startswith("s3://"):
                raise ValueError("a [regions.seaweedfs] server needs objects = \"s3://BUCKET\"")
            expected = f"http://127.0.0.1:{self.seaweedfs.s3_port}"
            if self.s3_endpoint not in (None, expected, expected + "/"):
                raise ValueError(f"s3_endpoint {self.s3_endpoint!r} is not the SeaweedFS server's S3 port "
                                 f"({expected})")
        if self.postgres is not None:
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError

            try:
                url = make_url(self.state)
            except ArgumentError:
                raise ValueError(f"state {self.state!r} is not a URL") from None
            if url.get_backend_name() != "postgresql" or url.host not in ("127.0.0.1", "localhost") or (
                    url.port != self.postgres.port):
                raise ValueError(f"a [regions.postgres] server on port {self.postgres.port} needs state = "
                                 f"\"postgresql://regionflow@127.0.0.1:{self.postgres.port}/regionflow\"")
        return self

    @property
    def store_url(self) -> str:
        """The object store URL adapters open: objects, with s3_endpoint (or the SeaweedFS server's S3
        port) as the endpoint of an s3:// store."""
        endpoint = self.s3_endpoint or (f"http://127.0.0.1:{self.seaweedfs.s3_port}" if self.seaweedfs else None)
        if endpoint is None or not self.objects.startswith("s3://") or "endpoint=" in self.objects:
            return self.objects
        from urllib.parse import quote

        sep = "&" if "?" in self.objects else "?"
        return f"{self.objects}{sep}endpoint={quote(endpoint.rstrip('/'), safe=':/')}"

    def ports_in_use(self) -> dict[int, str]:
        """Every port this region's gateway and servers listen on, with what it is for."""
        used = {self.port: f"region {self.name}"}
        if self.seaweedfs:
            used.update({p: f"region {self.name} SeaweedFS {what}" for what, p in self.seaweedfs.ports().items()})
        if self.postgres:
            used[self.postgres.port] = f"region {self.name} PostgreSQL"
        return used

    @property
    def url(self) -> str:
        """The region gateway's base URL, e.g. http://127.0.0.1:8700 (https:// with TLS; IPv6 hosts in
        brackets)."""
        return _http_url(self.host, self.port, self.tls)

    def server_tls(self) -> tuple[str | None, str | None]:
        """(ssl_certfile, ssl_keyfile) for uvicorn ((None, None) for plain HTTP); ConfigError when the
        files cannot be read or do not match."""
        return server_files(self.tls_cert, self.tls_key, f"regions.{self.name}")


class AccessPointConfig(_Listener):
    """The global access point's listening address (and TLS files), and the one global bucket its S3
    pass-through serves (each region's S3 store holds a bucket of that name)."""

    bucket: str = Field(default="batch", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

    @property
    def url(self) -> str:
        """The access point's base URL, e.g. http://127.0.0.1:8702 (https:// with TLS; IPv6 hosts in
        brackets)."""
        return _http_url(self.host, self.port, self.tls)

    def server_tls(self) -> tuple[str | None, str | None]:
        """(ssl_certfile, ssl_keyfile) for uvicorn ((None, None) for plain HTTP); ConfigError when the
        files cannot be read or do not match."""
        return server_files(self.tls_cert, self.tls_key, "access_point")


class ReplicationConfig(_Model):
    """How replicators poll (seconds between polls of an idle feed, changes fetched per poll) and how
    uploads are acknowledged: "sync" waits until every other region stored the upload (object and job
    record), at most sync_timeout seconds per region, after which that region is marked lagging and
    uploads stop waiting for it until it has caught up; "async" acknowledges once this region has it."""

    interval: float = Field(default=0.2, gt=0)
    batch: int = Field(default=500, strict=True, ge=1)
    uploads: Literal["sync", "async"] = "sync"
    sync_timeout: float = Field(default=2.0, gt=0)
    # Seconds between passes of the store watcher (replication/watcher.py), which feeds objects written
    # straight into a region's store; 0 turns it off.
    watch_interval: float = Field(default=1.0, ge=0)


class CanaryConfig(_Model):
    """A tiny file submitted through the access point by each region every `interval` seconds (0 = off)."""

    interval: float = Field(default=0.0, ge=0)
    timeout: float = Field(default=60.0, gt=0)


class Config(_Model):
    """The topology: regions, access point, routing control, and shared settings."""

    primary: str
    regions: list[RegionConfig]
    access_point: AccessPointConfig
    control: str
    replication: ReplicationConfig = Field(default_factory=ReplicationConfig)
    canary: CanaryConfig = Field(default_factory=CanaryConfig)
    pipeline: str | None = None  # path to a pipeline file; None = the built-in pipeline
    notifier: str | None = None  # outbox:///dir or smtp://host:port; None = one outbox in data_dir for all
    plan: str | None = None  # the region-switch plan for failover/failback; None = the built-in batch plan
    # The largest object a gateway accepts (bytes, or e.g. "5GiB"); bigger uploads get 413, nothing stored.
    max_upload_bytes: int = Field(default=5 << 30, ge=1)
    # The only directory (besides the configured plan and the built-in plans) the regions run plans from:
    # plans can run shell commands, so POST /plans/run must not accept any file on the server.
    plans_dir: str = "plans"
    # The etcd members `regionflow up` runs for an etcd:// control (empty: the control is run elsewhere).
    etcd: list[EtcdMemberConfig] = Field(default_factory=list)
    # The ledger workload's database nodes (`init --ledger`, `init --servers`); None: no ledger.
    ledger: LedgerConfig | None = None
    data_dir: str = DATA_DIR
    secrets_file: str = f"{DATA_DIR}/secrets.toml"
    tls_ca: str | None = Field(default=None, min_length=1)  # PEM CA file clients verify servers with

    _source: Path | None = PrivateAttr(default=None)

    @field_validator("regions")
    @classmethod
    def _at_least_two(cls, v: list[RegionConfig]) -> list[RegionConfig]:
        if len(v) < 2:
            raise ValueError(f"at least two regions are needed, found {len(v)}")
        return v

    @field_validator("max_upload_bytes", mode="before")
    @classmethod
    def _size(cls, v: Any) -> Any:
        return parse_size(v) if isinstance(v, str) else v

    @field_validator("control")
    @classmethod
    def _control(cls, v: str) -> str:
        return _check_url(v, _CONTROL_SCHEMES, "sqlite:///.regionflow/control.db")

    @field_validator("notifier")
    @classmethod
    def _notifier(cls, v: str | None) -> str | None:
        return None if v is None else _check_url(v, _NOTIFIER_SCHEMES, "smtp://127.0.0.1:1025")

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        names: dict[str, int] = {}
        ports: dict[int, str] = {}
        for i, r in enumerate(self.regions):
            if r.name in names:
                raise ValueError(f"regions.{i}.name: region {r.name!r} is defined twice (also regions.{names[r.name]})")
            names[r.name] = i
            for port, what in r.ports_in_use().items():
                if port in ports and port == r.port:
                    raise ValueError(f"regions.{i}.port: port {port} is already used by {ports[port]}")
                if port in ports:
                    raise ValueError(f"regions.{i}: port {port} ({what}) is already used by {ports[port]}")
                ports[port] = what
        members: set[str] = set()
        for i, m in enumerate(self.etcd):
            if m.name in members:
                raise ValueError(f"etcd.{i}.name: member {m.name!r} is defined twice")
            members.add(m.name)
            for port, what in ((m.client_port, "client"), (m.peer_port, "peer")):
                if port in ports:
                    raise ValueError(f"etcd.{i}: port {port} (etcd {m.name} {what}) is already used by {ports[port]}")
                ports[port] = f"etcd {m.name} {what}"
        if self.ledger is not None:
            if set(self.ledger.ports) != set(names):
                raise ValueError(f"ledger.ports: needs one port per region ({', '.join(names)}), found "
                                 f"{', '.join(self.ledger.ports) or 'none'}")
            for region, port in self.ledger.ports.items():
                if port in ports:
                    raise ValueError(f"ledger.ports: port {port} ({region} ledger database) is already used by "
                                     f"{ports[port]}")
                ports[port] = f"{region} ledger database"
        if self.etcd:
            expected = {f"127.0.0.1:{m.client_port}" for m in self.etcd}
            hosts = set(self.control.partition("://")[2].split("/", 1)[0].split(","))
            if not self.control.startswith("etcd://") or hosts != expected:
                raise ValueError(f"control: [[etcd]] members are configured, so control must be "
                                 f"\"etcd://{','.join(sorted(expected))}\"")
        if self.access_point.port in ports:
            raise ValueError(f"access_point.port: port {self.access_point.port} is already used by "
                             f"{ports[self.access_point.port]}")
        if self.primary not in names:
            raise ValueError(f"primary: {self.primary!r} is not one of the regions ({', '.join(names)})")
        return self

    # -- helpers -----------------------------------------------------------------------------------

    @property
    def source(self) -> Path | None:
        """The regionflow.toml this config was loaded from (None if built in code)."""
        return self._source

    @property
    def region_names(self) -> list[str]:
        """The region names in file order."""
        return [r.name for r in self.regions]

    def region(self, name: str) -> RegionConfig:
        """The region called name; ConfigError listing the known names if there is none."""
        for r in self.regions:
            if r.name == name:
                return r
        raise ConfigError(f"unknown region {name!r} (known: {', '.join(self.region_names)})")

    def region_url(self, name: str) -> str:
        """The region's gateway base URL, e.g. http://127.0.0.1:8700."""
        return self.region(name).url

    @property
    def access_point_url(self) -> str:
        """The global access point's base URL (what clients talk to)."""
        return self.access_point.url

    @property
    def plan_path(self) -> str:
        """The configured region-switch plan, or the built-in one: examples/plans/batch.yaml, or with a
        [ledger] examples/plans/ledger.yaml (the batch plan's steps and the database's)."""
        if self.plan:
            return self.plan
        from importlib import resources

        builtin = "plans/ledger.yaml" if self.ledger is not None else "plans/batch.yaml"
        return str(resources.files("regionflow.switch").joinpath(builtin))

    def tls_verify(self) -> Verify:
        """What every client of this topology verifies the listeners' certificates with: a context trusting
        tls_ca when set, else True (httpx's default trust store)."""
        return client_verify(self.tls_ca)

    def load_pipeline(self) -> Pipeline:
        """The configured pipeline file, or the built-in pipeline when none is set."""
        return _load_pipeline_file(self.pipeline) if self.pipeline else default_pipeline()

    def resolved(self, base: Path) -> Config:
        """A copy with every relative path and file/sqlite/outbox URL made absolute against base."""
        regions = [r.model_copy(update={"objects": resolve_url(r.objects, base), "state": resolve_url(r.state, base),
                                        **r._resolved(base)})
                   for r in self.regions]
        update: dict[str, Any] = {
            "regions": regions,
            "access_point": self.access_point.model_copy(update=self.access_point._resolved(base)),
            "tls_ca": resolve_path(self.tls_ca, base) if self.tls_ca else None,
            "control": resolve_url(self.control, base),
            "data_dir": resolve_path(self.data_dir, base),
            "secrets_file": resolve_path(self.secrets_file, base),
            "pipeline": resolve_path(self.pipeline, base) if self.pipeline else None,
            "plan": resolve_path(self.plan, base) if self.plan else None,
            "plans_dir": resolve_path(self.plans_dir, base),
            "notifier": resolve_url(self.notifier, base) if self.notifier else None,
        }
        copy = self.model_copy(update=update)
        copy._source = self._source
        return copy


def backends_in_use(config: Config) -> dict[str, Any]:
    """What each region's objects and state and the routing control run on, by URL scheme, and whether
    `regionflow up` runs the servers: {"control": "etcd", "managed": True, "regions": {name: {"objects":
    "s3", "state": "postgresql"}}}."""
    return {"control": _scheme(config.control),
            "managed": bool(config.etcd or config.ledger) or any(r.seaweedfs or r.postgres for r in config.regions),
            "regions": {r.name: {"objects": _scheme(r.objects), "state": _scheme(r.state)} for r in config.regions}}


def _format_errors(source: str, exc: ValidationError) -> str:
    """One line: "<source>: <key path>: <reason>" for the first error, and how many more there are."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first["type"] == "value_error" and "error" in first.get("ctx", {}):
        msg = str(first["ctx"]["error"])
    else:
        msg = first["msg"]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{source}: {where}: {msg}{more}" if where else f"{source}: {msg}{more}"


def load_config(path: str | Path) -> Config:
    """Load and validate a regionflow.toml (or the one in a directory); relative locations become absolute."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / CONFIG_FILE
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no {CONFIG_FILE} at {p} (run `regionflow init`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{p}: cannot read config: {reason}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(str(p), exc)) from None
    config._source = p.absolute()
    resolved = config.resolved(p.absolute().parent)
    if resolved.tls_ca is not None:
        try:
            check_ca_file(resolved.tls_ca)
        except ConfigError as exc:
            raise ConfigError(f"{p}: {exc}") from None
    return resolved

