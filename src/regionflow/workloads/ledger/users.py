"""The ledger UI's users (``data_dir/ledger/users.json``, mode 0600) and its signed session cookies.

Passwords are kept as scrypt hashes (hashlib: no new dependency) with a random salt each. A session is a
cookie signed with a key derived from the topology's signing key, so every region accepts it (a user stays
signed in through a failover, whichever region the access point sends them to) and nothing is kept on the
server. The cookie carries the user, their role, its expiry and the CSRF token every state-changing
request must echo in a header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets as _secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from regionflow.errors import ConfigError

__all__ = ["SESSION_SECONDS", "Session", "SessionSigner", "UserStore", "users_path"]

SESSION_SECONDS = 8 * 3600
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def users_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "ledger" / "users.json"


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, dklen=32, maxmem=64 << 20, **_SCRYPT)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class UserStore:
    """Users by name: {"name": {"hash": "scrypt$...", "admin": bool}}, replaced atomically on change."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def _load(self) -> dict[str, dict]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.path}: cannot read the ledger's users: {exc}") from None

    def _save(self, users: dict[str, dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, json.dumps(users, indent=2).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    def add(self, name: str, *, admin: bool = False, password: str | None = None, replace: bool = False) -> str:
        """Create user name (an admin may fail over from the UI) with password, or a generated one; the
        password. ConfigError for a bad name, a short password, or an existing user unless replace."""
        if not _NAME.match(name):
            raise ConfigError(f"{name!r} is not a user name (letters, digits, '.', '_', '-'; up to 64)")
        if password is not None and len(password) < 12:
            raise ConfigError("a password needs at least 12 characters")
        password = password or _secrets.token_urlsafe(15)
        salt = _secrets.token_bytes(16)
        with self._lock:
            users = self._load()
            if name in users and not replace:
                raise ConfigError(f"user {name!r} exists already (use --replace to set a new password)")
            users[name] = {"hash": f"scrypt${_b64(salt)}${_b64(_hash(password, salt))}", "admin": admin}
            self._save(users)
        return password

    def names(self) -> dict[str, bool]:
        """Every user with whether they are an admin."""
        return {name: bool(u.get("admin")) for name, u in self._load().items()}

    def verify(self, name: str, password: str) -> bool | None:
        """None when name/password is wrong; else whether the user is an admin. Takes the same time for an
        unknown user (a hash is computed either way)."""
        user = self._load().get(name)
        stored = str(user["hash"]) if user else f"scrypt${_b64(b'0' * 16)}${_b64(b'0' * 32)}"
        _, salt, digest = stored.split("$")
        ok = hmac.compare_digest(_hash(password, _unb64(salt)), _unb64(digest))
        return bool(user.get("admin")) if (ok and user) else None


@dataclass(frozen=True)
class Session:
    user: str
    admin: bool
    expires: float
    csrf: str


class SessionSigner:
    """Signs and checks session cookies (see the module docstring)."""

    def __init__(self, signing_key: bytes):
        self._key = hmac.new(signing_key, b"regionflow ledger session", hashlib.sha256).digest()

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def issue(self, user: str, admin: bool, seconds: int = SESSION_SECONDS) -> tuple[str, Session]:
        session = Session(user, admin, time.time() + seconds, _secrets.token_urlsafe(18))
        payload = _b64(json.dumps({"u": user, "a": admin, "e": session.expires, "c": session.csrf}).encode())
        return f"{payload}.{self._mac(payload)}", session

    def check(self, cookie: str | None) -> Session | None:
        """The session a cookie carries, or None (absent, altered, expired)."""
        if not cookie or "." not in cookie:
            return None
        payload, mac = cookie.rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            session = Session(str(data["u"]), bool(data["a"]), float(data["e"]), str(data["c"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > time.time() else None

    def login_nonce(self) -> str:
        """A token for the sign-in form (login CSRF): signed, valid for an hour."""
        stamp = str(int(time.time()))
        return f"{stamp}.{self._mac('login ' + stamp)}"

    def nonce_ok(self, nonce: str) -> bool:
        stamp, _, mac = nonce.partition(".")
        return (stamp.isdigit() and hmac.compare_digest(mac, self._mac("login " + stamp))
                and 0 <= time.time() - int(stamp) < 3600)
