"""Routing control: the RoutingControl port, its adapters chosen by URL, and a short-lived read cache."""

from __future__ import annotations

import re
import threading
import time

from regionflow.control.base import (
    ControlNotInitialized,
    ControlOutcomeUnknown,
    ControlState,
    RoutingControl,
    stale_epoch,
)
from regionflow.errors import ConfigError

__all__ = [
    "CachedControl",
    "ControlNotInitialized",
    "ControlOutcomeUnknown",
    "ControlState",
    "RoutingControl",
    "open_control",
    "parse_etcd_url",
    "stale_epoch",
]

_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+))(?::(?P<port>[0-9]+))?$")
_PREFIX = re.compile(r"^(/[A-Za-z0-9._-]+)+$")


def parse_etcd_url(url: str) -> tuple[list[str], str]:
    """The endpoints (``http://host:port``) and record key of ``etcd://h1:p1,h2:p2[/prefix]``.

    The key is ``<prefix>/control`` (``/regionflow/control`` without a path); a port defaults to 2379.
    ConfigError naming the problem for anything else (no host, a bad port, user info, a query)."""
    def bad(why: str) -> ConfigError:
        return ConfigError(f"routing control url {url!r}: {why} (expected etcd://host:port,host:port[/prefix])")

    rest = url.split("://", 1)[1] if "://" in url else ""
    if not url.lower().startswith("etcd://"):
        raise bad("not an etcd:// URL")
    if "?" in rest or "#" in rest:
        raise bad("takes no query or fragment")
    hosts, slash, path = rest.partition("/")
    if "@" in hosts:
        raise bad("user names and passwords are not supported")
    endpoints = []
    for item in hosts.split(","):
        if not item.strip():
            raise bad("an empty host between commas" if hosts else "names no host")
        m = _HOST_PORT.match(item.strip())
        if not m:
            raise bad(f"{item.strip()!r} is not host:port")
        port = int(m["port"] or 2379)
        if not 1 <= port <= 65535:
            raise bad(f"port {port} is out of range")
        host = f"[{m['v6']}]" if m["v6"] else m["host"]
        endpoints.append(f"http://{host}:{port}")
    prefix = ("/" + path).rstrip("/") if slash else ""
    if prefix and not _PREFIX.match(prefix):
        raise bad(f"key prefix {prefix!r} may hold only letters, digits, '.', '_', '-' between slashes")
    return endpoints, f"{prefix or '/regionflow'}/control"


def open_control(url: str) -> RoutingControl:
    """Return the adapter for url: ``sqlite:///path/to/control.db`` or ``etcd://h1:p1,h2:p2[/prefix]``.

    As in SQLAlchemy, ``sqlite:///rel/path`` is relative to the working directory and ``sqlite:////abs``
    is absolute; load_config makes the URLs of a regionflow.toml absolute.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite" or scheme.startswith("sqlite+"):
        try:
            database = make_url(url).database
        except ArgumentError:
            raise ConfigError(f"routing control url {url!r}: not a valid sqlite URL") from None
        if not database or database == ":memory:" or database.startswith("file:"):
            raise ConfigError(f"routing control url {url!r}: needs a file that every region process shares "
                              "(sqlite:///path/to/control.db)")
        from regionflow.control.sqlite import SqliteRoutingControl

        return SqliteRoutingControl(database)
    if scheme == "etcd":
        from regionflow.control.etcd import EtcdRoutingControl

        endpoints, key = parse_etcd_url(url)
        return EtcdRoutingControl(endpoints, key)
    raise ConfigError(f"routing control url {url!r}: unsupported scheme (expected sqlite:/// or etcd://)")


class CachedControl:
    """A RoutingControl whose get() may answer from a cache at most ``ttl`` seconds old.

    A region re-reads the control before each step of a job (DESIGN §3); the cache keeps that to about
    one store read per ttl per process. Anything that decides on safety by itself (a switch, the
    notification's last epoch check) reads with ``get(fresh=True)``. Writes go straight to the store and
    drop the cache, so the writer's next get() sees its own change. Errors are not cached: once the
    cached value has expired, a store that cannot be reached raises ControlUnavailable rather than
    serving an old value. Thread-safe.
    """

    def __init__(self, control: RoutingControl, ttl: float = 1.0) -> None:
        if ttl < 0:
            raise ValueError("ttl must be >= 0")
        self.control = control
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached: ControlState | None = None
        self._read_at = 0.0  # time.monotonic() of the read that produced _cached
        self._generation = 0  # bumped by invalidate(), so a read racing a write is not cached

    def __repr__(self) -> str:
        return f"CachedControl({self.control!r}, ttl={self.ttl:g})"

    def get(self, fresh: bool = False) -> ControlState:
        """The record, from the cache if it was read less than ttl seconds ago and fresh is False."""
        with self._lock:
            if not fresh and self._cached is not None and time.monotonic() - self._read_at < self.ttl:
                return self._cached
            generation = self._generation
        started = time.monotonic()
        state = self.control.get()
        with self._lock:
            if generation == self._generation:
                self._cached, self._read_at = state, started
        return state

    def invalidate(self) -> None:
        """Forget the cached record: the next get() reads the store."""
        with self._lock:
            self._cached = None
            self._generation += 1

    def set_active(self, region: str, expected_epoch: int, *, by: str = "") -> ControlState:
        """Compare-and-set on the store (see RoutingControl.set_active); drops the cache either way."""
        try:
            return self.control.set_active(region, expected_epoch, by=by)
        finally:
            self.invalidate()

    def initialize(self, region: str) -> ControlState:
        """Create the record if absent (see RoutingControl.initialize); drops the cache."""
        try:
            return self.control.initialize(region)
        finally:
            self.invalidate()

    def history(self, limit: int = 50) -> list[ControlState]:
        """The store's history, newest first (never cached)."""
        return self.control.history(limit)

    def close(self) -> None:
        """Close the wrapped control."""
        self.invalidate()
        self.control.close()
