"""Secrets (``.regionflow/secrets.toml``): the bearer tokens and the link-signing key.

The file is created with mode 0600 and refused when group or others can read it, because the tokens
grant API, admin and region-to-region access and the key signs download links.

Upgrading: a file written before a key existed lacks it; load_secrets then says which key is missing and
that `regionflow init --upgrade-secrets` adds it (upgrade_secrets: the keys already there are kept).
"""

from __future__ import annotations

import os
import secrets as _secrets
import stat
import tomllib
from pathlib import Path

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from regionflow.config.model import Config, _format_errors, _Model
from regionflow.errors import ConfigError

__all__ = ["Secrets", "load_secrets", "upgrade_secrets", "write_secrets"]


class Secrets(_Model):
    """Bearer tokens for the region APIs (api: read/write data; admin: also switch regions; replication:
    only the region-to-region routes, /internal/...) and the key that signs presigned links (hex)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_token: str = Field(min_length=16, repr=False)
    admin_token: str = Field(min_length=16, repr=False)
    replication_token: str = Field(min_length=16, repr=False)
    signing_key: str = Field(min_length=32, repr=False)
    # Written by `init --servers` for the servers regionflow runs; also used for an S3 store or a
    # PostgreSQL server run elsewhere when set (unset: boto3's credential chain, the URL's password).
    s3_access_key: str | None = Field(default=None, min_length=16, repr=False)
    s3_secret_key: str | None = Field(default=None, min_length=16, repr=False)
    postgres_password: str | None = Field(default=None, min_length=16, repr=False)
    # The ledger's database superuser (replication, pg_rewind, the plan's database steps); the ledger
    # service's own login rotates in data_dir/ledger/secret.json (workloads/ledger/secret.py).
    ledger_password: str | None = Field(default=None, min_length=16, repr=False)

    @field_validator("signing_key")
    @classmethod
    def _hex(cls, v: str) -> str:
        try:
            bytes.fromhex(v)
        except ValueError:
            raise ValueError("must be hexadecimal") from None
        return v

    @model_validator(mode="after")
    def _distinct(self) -> Secrets:
        # A shared value would let one credential do the other's job, which is what separate tokens prevent.
        tokens = {"api_token": self.api_token, "admin_token": self.admin_token,
                  "replication_token": self.replication_token}
        if len(set(tokens.values())) < len(tokens):
            raise ValueError("api_token, admin_token and replication_token must all differ")
        if (self.s3_access_key is None) != (self.s3_secret_key is None):
            raise ValueError("s3_access_key and s3_secret_key go together: set both or neither")
        return self

    @property
    def s3_credentials(self) -> dict[str, str | None]:
        """open_object_store's access_key and secret_key (None: boto3's own credential chain)."""
        return {"access_key": self.s3_access_key, "secret_key": self.s3_secret_key}


def _server_secrets() -> dict[str, str]:
    """Fresh credentials for the servers `init --servers` sets up (S3 access key in AWS's style)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return {"s3_access_key": "RF" + "".join(_secrets.choice(alphabet) for _ in range(18)),
            "s3_secret_key": _secrets.token_urlsafe(30), "postgres_password": _secrets.token_urlsafe(24)}


def _ledger_secrets() -> dict[str, str]:
    return {"ledger_password": _secrets.token_urlsafe(24)}


def _generate(servers: bool = False, ledger: bool = False) -> dict[str, str]:
    """A fresh value for every secret (and the servers' or the ledger's credentials when asked)."""
    values = {"api_token": _secrets.token_urlsafe(32), "admin_token": _secrets.token_urlsafe(32),
              "replication_token": _secrets.token_urlsafe(32), "signing_key": _secrets.token_hex(32)}
    if servers:
        values.update(_server_secrets())
    if ledger:
        values.update(_ledger_secrets())
    return values


_SECRETS_HEADER = """\
# regionflow secrets: bearer tokens for the region APIs and the key that signs download links.
# api_token: clients (CLI, scripts); admin_token: also region switches, faults and the console;
# replication_token: regions reading each other's change feed and objects (/internal/... only).
# s3_access_key, s3_secret_key, postgres_password (with `init --servers`): the servers' credentials;
# ledger_password (with `init --ledger` or --servers): the ledger database's superuser.
# Keep this file private (mode 0600) and out of version control. Regenerate by deleting it and
# running `regionflow init --force` (links already handed out stop working).
"""


# Keys added after secrets files were first written: an older file lacks them and upgrade_secrets adds them.
_ADDED_LATER = ("replication_token",)
_UPGRADE = "regionflow init --upgrade-secrets"


def _body(values: dict[str, str]) -> str:
    return _SECRETS_HEADER + "\n" + "".join(f'{k} = "{values[k]}"\n' for k in Secrets.model_fields if k in values)


def _write_private(p: Path, body: str) -> None:
    """Create p (which must not exist) with mode 0600 from the start and write body durably."""
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # exactly 0600 whatever the umask
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            fd = -1
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        if fd >= 0:
            os.close(fd)
        p.unlink(missing_ok=True)
        raise


def write_secrets(path: str | Path, *, servers: bool = False, ledger: bool = False) -> Secrets:
    """Generate new secrets into a new file created with mode 0600 (with the servers' or the ledger's
    credentials when asked); ConfigError if the file exists."""
    p = Path(path).expanduser()
    values = _generate(servers, ledger)
    s = Secrets.model_validate(values)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        _write_private(p, _body(values))
    except FileExistsError:
        raise ConfigError(f"secrets file {p} already exists (delete it first to generate new secrets)") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot create secrets file: {exc.strerror}") from None
    return s


def _read(p: Path) -> tuple[str, dict]:
    """The text and parsed TOML of the secrets file p; ConfigError if missing, unreadable or not private."""
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ConfigError(f"no secrets file at {p} (run `regionflow init`, or set secrets_file)") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read secrets: {exc.strerror}") from None
    if os.name == "posix" and st.st_mode & 0o077:
        raise ConfigError(f"{p}: mode {stat.S_IMODE(st.st_mode):04o} lets group or others access the secrets; "
                          f"run `chmod 600 {p}`")
    try:
        text = p.read_text(encoding="utf-8")
        return text, tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{p}: cannot read secrets: {reason}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None


def _validate(p: Path, data: dict) -> Secrets:
    try:
        return Secrets.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(str(p), exc)) from None


def load_secrets(config: Config) -> Secrets:
    """Read config.secrets_file; ConfigError if it is missing, invalid, or readable by group or others, and
    one saying how to upgrade it when it predates a key (e.g. replication_token)."""
    p = Path(config.secrets_file)
    _, data = _read(p)
    absent = [k for k in _ADDED_LATER if k not in data]
    if absent:
        raise ConfigError(f"{p}: no {', '.join(absent)} (the file predates it): run `{_UPGRADE}` to add it, "
                          f"keeping the other secrets, then restart the regions (copy the file to every "
                          f"machine that runs one)")
    return _validate(p, data)


def upgrade_secrets(path: str | Path, *, servers: bool = False, ledger: bool = False) -> list[str]:
    """Add the keys an older secrets file lacks (freshly generated; with servers or ledger, also their
    credentials), keeping its other values and comments; the names added ([] when none was missing). The
    file is replaced atomically and stays 0600."""
    p = Path(path).expanduser()
    text, data = _read(p)
    wanted = (*_ADDED_LATER, *(_server_secrets() if servers else ()), *(_ledger_secrets() if ledger else ()))
    added = {k: v for k, v in _generate(servers, ledger).items() if k in wanted and k not in data}
    if not added:
        _validate(p, data)
        return []
    _validate(p, {**data, **added})  # refuse to write a file that still would not load
    lines = "".join(f'{k} = "{v}"\n' for k, v in added.items())
    body = text + ("" if text.endswith("\n") or not text else "\n") + f"\n# added by `{_UPGRADE}`\n{lines}"
    tmp = p.with_name(f".{p.name}.upgrade")
    try:
        tmp.unlink(missing_ok=True)  # left by an interrupted upgrade
        _write_private(tmp, body)
        os.replace(tmp, p)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{p}: cannot upgrade the secrets file: {exc.strerror}") from None
    return list(added)

