"""Presigned links: they work until they expire, and no part of them can be changed."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from regionflow.errors import InvalidKey, InvalidSignature
from regionflow.storage.presign import presign_url, sign, verify, verify_url

SECRET = b"s3cr3t-signing-key"
NOW = 1_700_000_000.0
BASE = "http://127.0.0.1:8080"


def test_link_verifies_before_expiry() -> None:
    url = presign_url(BASE, "output/job-1.csv", SECRET, expires_in=3600, now=NOW)
    assert url.startswith(f"{BASE}/o/output/job-1.csv?expires={int(NOW) + 3600}&sig=")
    assert verify_url(url, SECRET, now=NOW) == "output/job-1.csv"
    assert verify_url(url, SECRET, now=NOW + 3600) == "output/job-1.csv"  # the last valid second


def test_trailing_slash_and_base_path() -> None:
    url = presign_url(BASE + "/", "a/b", SECRET, now=NOW)
    assert url.startswith(f"{BASE}/o/a/b?")
    url = presign_url(BASE + "/gateway/", "o/x", SECRET, now=NOW)
    assert url.startswith(f"{BASE}/gateway/o/o/x?")
    assert verify_url(url, SECRET, now=NOW) == "o/x"


def test_expired_link_is_refused() -> None:
    url = presign_url(BASE, "k", SECRET, expires_in=60, now=NOW)
    with pytest.raises(InvalidSignature, match="link expired"):
        verify_url(url, SECRET, now=NOW + 61)


def _parts(url: str) -> tuple[str, str, str]:
    path, query = url.split("?", 1)
    params = dict(p.split("=", 1) for p in query.split("&"))
    return path, params["expires"], params["sig"]


def test_changed_key_is_refused() -> None:
    url = presign_url(BASE, "output/job-1.csv", SECRET, now=NOW)
    with pytest.raises(InvalidSignature, match="signature invalid"):
        verify_url(url.replace("job-1", "job-2"), SECRET, now=NOW)
    _, expires, sig = _parts(url)
    with pytest.raises(InvalidSignature, match="signature invalid"):
        verify("output/job-2.csv", expires, sig, SECRET, now=NOW)


def test_changed_expiry_is_refused() -> None:
    url = presign_url(BASE, "k", SECRET, expires_in=60, now=NOW)
    _, expires, sig = _parts(url)
    later = str(int(expires) + 86400)
    with pytest.raises(InvalidSignature, match="signature invalid"):
        verify_url(url.replace(f"expires={expires}", f"expires={later}"), SECRET, now=NOW)
    # Another spelling of the same number is not the signed expiry either.
    for spelling in (f"0{expires}", f"+{expires}", f" {expires}", "", "soon", "-1"):
        with pytest.raises(InvalidSignature):
            verify("k", spelling, sig, SECRET, now=NOW)
    verify("k", int(expires), sig, SECRET, now=NOW)  # an int expiry is accepted


@pytest.mark.parametrize("expires", ["soon", "12abc", "1.5", "1e9", "0x10", "１２"])
def test_non_numeric_expiry_is_malformed(expires: str) -> None:
    url = presign_url(BASE, "k", SECRET, now=NOW)
    _, signed, _sig = _parts(url)
    with pytest.raises(InvalidSignature, match="malformed"):
        verify_url(url.replace(f"expires={signed}", f"expires={quote(expires)}"), SECRET, now=NOW)


def test_changed_signature_is_refused() -> None:
    url = presign_url(BASE, "k", SECRET, now=NOW)
    _, expires, sig = _parts(url)
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    with pytest.raises(InvalidSignature, match="signature invalid"):
        verify("k", expires, flipped, SECRET, now=NOW)
    for bad in (sig[:-1], sig + "A", "", "not a signature"):
        with pytest.raises(InvalidSignature):
            verify("k", expires, bad, SECRET, now=NOW)


def test_wrong_secret_is_refused() -> None:
    url = presign_url(BASE, "k", SECRET, now=NOW)
    with pytest.raises(InvalidSignature, match="signature invalid"):
        verify_url(url, b"another-secret", now=NOW)


def test_method_is_signed() -> None:
    expires = int(NOW) + 60
    sig = sign("k", SECRET, expires, "PUT")
    assert sig != sign("k", SECRET, expires, "GET")
    verify("k", expires, sig, SECRET, now=NOW, method="PUT")
    with pytest.raises(InvalidSignature, match="signature invalid"):
        verify("k", expires, sig, SECRET, now=NOW)


@pytest.mark.parametrize("mangle", [
    lambda u: u.split("?")[0],                                  # no query at all
    lambda u: u.replace("&sig=", "&sog="),                      # no sig
    lambda u: u.replace("expires=", "expiry="),                 # no expires
    lambda u: u + "&sig=AAAA",                                  # sig twice
    lambda u: u.replace("/o/", "/x/"),                          # not an object link
])
def test_malformed_links_are_refused(mangle) -> None:  # noqa: ANN001
    url = presign_url(BASE, "k", SECRET, now=NOW)
    with pytest.raises(InvalidSignature, match="link malformed"):
        verify_url(mangle(url), SECRET, now=NOW)


def test_dot_dot_smuggled_into_a_link_is_refused() -> None:
    url = presign_url(BASE, "a/b", SECRET, now=NOW)
    with pytest.raises(InvalidSignature):
        verify_url(url.replace("/o/a/b", "/o/a/%2E%2E/b"), SECRET, now=NOW)
    with pytest.raises(InvalidSignature, match="malformed"):
        verify_url(url.replace("/o/a/b", "/o/%FF"), SECRET, now=NOW)


@pytest.mark.parametrize("key", ["input/ma file é.csv", "reports/q1 summary.csv", "données/éte 2024/ファイル.csv",
                                 "a%20b/c?d#e&f=g"])
def test_unusual_keys_roundtrip(key: str) -> None:
    url = presign_url(BASE, key, SECRET, now=NOW)
    assert f"/o/{quote(key, safe='/')}?" in url
    assert " " not in url and "#" not in url
    assert verify_url(url, SECRET, now=NOW) == key


@pytest.mark.parametrize("key", ["..", "../x", "a/../b", "", "/etc/passwd", "a//b"])
def test_bad_keys_cannot_be_signed(key: str) -> None:
    with pytest.raises(InvalidKey):
        sign(key, SECRET, int(NOW))
    with pytest.raises(InvalidKey):
        presign_url(BASE, key, SECRET, now=NOW)


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        presign_url(BASE, "k", b"", now=NOW)
