"""Secrets (``.regionflow/secrets.toml``): the API bearer tokens and the link-signing key.

The file is created with mode 0600 and refused when group or others can read it, because the tokens
grant API and admin access and the key signs download links.
"""

from __future__ import annotations

import os
import secrets as _secrets
import stat
import tomllib
from pathlib import Path

from pydantic import ConfigDict, Field, ValidationError, field_validator

from regionflow.config.model import Config, _format_errors, _Model
from regionflow.errors import ConfigError

__all__ = ["Secrets", "load_secrets", "write_secrets"]


class Secrets(_Model):
    """Bearer tokens for the region APIs (api: read/write data; admin: also switch regions) and the
    key that signs presigned links (hex)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_token: str = Field(min_length=16, repr=False)
    admin_token: str = Field(min_length=16, repr=False)
    signing_key: str = Field(min_length=32, repr=False)

    @field_validator("signing_key")
    @classmethod
    def _hex(cls, v: str) -> str:
        try:
            bytes.fromhex(v)
        except ValueError:
            raise ValueError("must be hexadecimal") from None
        return v


_SECRETS_HEADER = """\
# regionflow secrets: bearer tokens for the region APIs and the key that signs download links.
# Keep this file private (mode 0600) and out of version control. Regenerate by deleting it and
# running `regionflow init --force` (links already handed out stop working).
"""


def write_secrets(path: str | Path) -> Secrets:
    """Generate new secrets into a new file created with mode 0600; ConfigError if the file exists."""
    p = Path(path).expanduser()
    s = Secrets(api_token=_secrets.token_urlsafe(32), admin_token=_secrets.token_urlsafe(32),
                signing_key=_secrets.token_hex(32))
    body = (f'{_SECRETS_HEADER}\napi_token = "{s.api_token}"\nadmin_token = "{s.admin_token}"\n'
            f'signing_key = "{s.signing_key}"\n')
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"secrets file {p} already exists (delete it first to generate new secrets)") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot create secrets file: {exc.strerror}") from None
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
    return s


def load_secrets(config: Config) -> Secrets:
    """Read config.secrets_file; ConfigError if it is missing, invalid, or readable by group or others."""
    p = Path(config.secrets_file)
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
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{p}: cannot read secrets: {reason}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    try:
        return Secrets.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(str(p), exc)) from None
