"""TLS for the HTTP listeners (region gateways, the access point) and for the clients that call them.

A listener serves TLS when its table in regionflow.toml sets ``tls_cert`` and ``tls_key`` (PEM files);
its URL is then https://. Clients verify the server's certificate against ``tls_ca`` (a PEM file of CA
certificates) when it is set, else against httpx's default trust store (certifi, or SSL_CERT_FILE).

Which files are checked when: the CA file by load_config, because every process of a topology is a
client of the others; a listener's certificate and key only by the process that serves it (and by
`regionflow up` before it starts anything), because on separate machines each holds only its own key.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from regionflow.errors import ConfigError

__all__ = ["Verify", "check_ca_file", "client_verify", "server_files"]

Verify = ssl.SSLContext | bool
"""What an httpx client verifies servers with: a context trusting a CA file, or True (the default store)."""


def _readable(path: str, what: str) -> None:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what}: {p}: no such file")
    if not os.access(p, os.R_OK):
        raise ConfigError(f"{what}: {p}: not readable by this user")


def check_ca_file(path: str, what: str = "tls_ca") -> None:
    """ConfigError unless path is a readable file of PEM CA certificates."""
    _readable(path, what)
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"{what}: {path}: not a PEM file of CA certificates ({exc})") from None


def client_verify(ca_file: str | None) -> Verify:
    """An SSLContext that trusts only the CAs in ca_file, or True (httpx's default trust) when None."""
    if ca_file is None:
        return True
    check_ca_file(ca_file)
    return ssl.create_default_context(cafile=ca_file)


def server_files(cert: str | None, key: str | None, where: str) -> tuple[str | None, str | None]:
    """(cert, key) for uvicorn's ssl_certfile/ssl_keyfile ((None, None) for plain HTTP), once both files are
    readable and the key matches the certificate; ConfigError naming the listener (where) otherwise."""
    if cert is None or key is None:
        return None, None
    _readable(cert, f"{where}.tls_cert")
    _readable(key, f"{where}.tls_key")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{where}: cannot use tls_cert {cert} with tls_key {key} ({exc}); expected a PEM "
                          f"certificate and its unencrypted PEM private key") from None
    return cert, key
