"""Presigned links: HMAC-SHA256 over (method, key, expiry), so none of them can be altered.

A link is `<base>/o/<quoted key>?expires=<unix seconds>&sig=<url-safe base64 of the MAC>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from urllib.parse import parse_qs, quote, unquote, urlsplit

from regionflow.errors import InvalidKey, InvalidSignature
from regionflow.storage.base import validate_key

LINK_PATH = "/o/"
# Canonical decimal only: int() would also take "012", " 12", "+12" and "1_2" for the same expiry.
_EXPIRES = re.compile(r"0|[1-9][0-9]{0,11}")
_SIG = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 bytes, url-safe base64 without padding


def sign(key: str, secret: bytes, expires_at: int, method: str = "GET") -> str:
    """Return the url-safe signature of (method, key, expires_at); raise InvalidKey for a bad key."""
    validate_key(key)
    if not secret:
        raise ValueError("the signing secret is empty")
    # Keys cannot hold control characters, so newline-separated fields cannot be confused.
    message = f"{method.upper()}\n{key}\n{int(expires_at)}".encode()
    mac = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def presign_url(base_url: str, key: str, secret: bytes, expires_in: int = 3600, now: float | None = None) -> str:
    """Return a GET link to key under base_url that stops working expires_in seconds from now."""
    expires_at = int((time.time() if now is None else now) + expires_in)
    sig = sign(key, secret, expires_at)
    return f"{base_url.rstrip('/')}{LINK_PATH}{quote(key, safe='/')}?expires={expires_at}&sig={sig}"


def verify(key: str, expires: str | int, sig: str, secret: bytes, now: float | None = None,
           method: str = "GET") -> None:
    """Return if sig signs (method, key, expires) and the link has not expired; else raise InvalidSignature."""
    if isinstance(expires, int) and not isinstance(expires, bool) and expires >= 0:
        expires_at = expires
    elif isinstance(expires, str) and _EXPIRES.fullmatch(expires):
        expires_at = int(expires)
    else:
        raise InvalidSignature("link malformed: bad expiry")
    if not isinstance(sig, str) or not _SIG.fullmatch(sig):
        raise InvalidSignature("link malformed: bad signature")
    try:
        expected = sign(key, secret, expires_at, method)
    except InvalidKey:
        raise InvalidSignature("link malformed: bad object key") from None
    if not hmac.compare_digest(expected.encode("ascii"), sig.encode("ascii")):
        raise InvalidSignature("link signature invalid")
    # Checked after the signature, so an expired-but-forged link is reported as forged.
    if (time.time() if now is None else now) > expires_at:
        raise InvalidSignature("link expired")


def verify_url(url: str, secret: bytes, now: float | None = None) -> str:
    """Verify a link made by presign_url and return the object key it grants; raise InvalidSignature."""
    parts = urlsplit(url)
    # The first '/o/' ends the base URL's own path; a wrong split changes the key and fails the MAC.
    at = parts.path.find(LINK_PATH)
    if at < 0:
        raise InvalidSignature("link malformed: not an object link")
    try:
        key = unquote(parts.path[at + len(LINK_PATH):], errors="strict")
        query = parse_qs(parts.query, strict_parsing=bool(parts.query), errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise InvalidSignature("link malformed: bad encoding") from None
    expires, sig = query.get("expires", []), query.get("sig", [])
    if len(expires) != 1 or len(sig) != 1:
        raise InvalidSignature("link malformed: expires and sig are each required once")
    verify(key, expires[0], sig[0], secret, now)
    return key
