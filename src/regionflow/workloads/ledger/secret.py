"""The ledger's database secret (``data_dir/ledger/secret.json``): where the primary is and how the
ledger service logs in to it — like the secret a cloud runbook updates after a database failover.

Written atomically with mode 0600. ``version`` grows with every change, so a region can say which secret
it runs on (the rotate_secret step waits for that before it revokes the old password). ``writable`` is
false while a planned switchover holds writes (the regions then answer transfers with 503).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from regionflow.errors import ConfigError

__all__ = ["LedgerSecret", "SecretWatcher", "read_secret", "secret_path", "write_secret"]


class LedgerSecret(BaseModel):
    """The ledger service's login (a role in the group ``ledger_rw``) and the primary's endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    primary_region: str
    host: str
    port: int = Field(ge=1, le=65535)
    database: str = "ledger"
    user: str
    password: str = Field(min_length=16, repr=False)
    writable: bool = True


def secret_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "ledger" / "secret.json"


def read_secret(path: Path) -> LedgerSecret | None:
    """The secret at path; None when there is none yet (the ledger is not set up); ConfigError if bad."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the ledger secret: {exc.strerror}") from None
    try:
        return LedgerSecret.model_validate_json(text)
    except ValidationError as exc:
        raise ConfigError(f"{path}: not a ledger secret: {exc.errors(include_url=False)[0]['msg']}") from None


def write_secret(path: Path, secret: LedgerSecret) -> None:
    """Replace the secret atomically (0600 from creation, fsynced): a reader sees the old or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, json.dumps(secret.model_dump(), indent=2).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class SecretWatcher:
    """The current secret, re-read when the file changes (a stat per call: cheap next to a transaction)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._secret: LedgerSecret | None = None

    def current(self) -> LedgerSecret | None:
        """The secret as the file says now (None: not set up yet)."""
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp or (stamp is not None and self._secret is None):
                self._secret = read_secret(self.path) if stamp is not None else None
                self._stamp = stamp
            return self._secret
