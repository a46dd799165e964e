"""Presigned links: HMAC-SHA256 over (method, key, expiry), so none of them can be altered."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import parse_qs, quote, unquote, urlsplit

from regionflow.errors import InvalidSignature
from regionflow.storage.base import validate_key

LINK_PATH = "/o/"


def sign(key: str, secret: bytes, expires_at: int, method: str = "GET") -> str:
    """The url-safe signature of one (method, key, expiry)."""
    validate_key(key)
    mac = hmac.new(secret, f"{method.upper()}\n{key}\n{int(expires_at)}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def presign_url(base_url: str, key: str, secret: bytes, expires_in: int = 3600, now: float | None = None) -> str:
    """A GET link to key under base_url that stops working expires_in seconds from now."""
    expires_at = int((time.time() if now is None else now) + expires_in)
    sig = sign(key, secret, expires_at)
    return f"{base_url.rstrip('/')}{LINK_PATH}{quote(key, safe='/')}?expires={expires_at}&sig={sig}"


def verify(key: str, expires: str | int, sig: str, secret: bytes, now: float | None = None,
           method: str = "GET") -> None:
    """Raise InvalidSignature unless sig is the signature of (method, key, expires) and it has not expired."""
    try:
        expires_at = int(expires)
    except (TypeError, ValueError):
        raise InvalidSignature("link malformed: bad expiry") from None
    if not sig:
        raise InvalidSignature("link malformed: no signature")
    expected = sign(key, secret, expires_at, method)
    if not hmac.compare_digest(expected.encode(), sig.encode()):
        raise InvalidSignature("link signature invalid")
    if (time.time() if now is None else now) > expires_at:
        raise InvalidSignature("link expired")


def verify_url(url: str, secret: bytes, now: float | None = None) -> str:
    """Verify a link made by presign_url and return the object key it grants."""
    parts = urlsplit(url)
    if not parts.path.startswith(LINK_PATH):
        raise InvalidSignature("link malformed: not an object link")
    key = unquote(parts.path[len(LINK_PATH):])
    query = parse_qs(parts.query)
    if "expires" not in query or "sig" not in query:
        raise InvalidSignature("link malformed: expires and sig are required")
    verify(key, query["expires"][0], query["sig"][0], secret, now)
    return key
