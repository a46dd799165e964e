"""The boto3 client regionflow's S3 code shares (the store, the SeaweedFS server's own checks), and the
``s3://`` object store URL."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from regionflow.errors import ConfigError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_session: Any = None
_session_lock = threading.Lock()

def make_client(endpoint: str | None, access_key: str | None, secret_key: str | None, *,
                region: str = "us-east-1", connect_timeout: float = 1.0, read_timeout: float = 5.0,
                attempts: int = 2, pool: int = 32) -> S3Client:
    """A boto3 S3 client for endpoint (None: AWS): path-style addressing, SigV4, short timeouts.

    With access_key None, boto3's default credential chain applies (environment, profile, role)."""
    from botocore.config import Config

    config = Config(region_name=region, signature_version="s3v4", s3={"addressing_style": "path"},
                    connect_timeout=connect_timeout, read_timeout=read_timeout, max_pool_connections=pool,
                    retries={"total_max_attempts": attempts, "mode": "standard"})
    global _session
    # One session for the process: it loads the S3 service model once (a fresh one costs ~0.2 s per
    # client). Making clients from a session is not thread-safe, using them is.
    with _session_lock:
        if _session is None:
            import boto3

            _session = boto3.session.Session()
        return _session.client("s3", endpoint_url=endpoint, aws_access_key_id=access_key,
                               aws_secret_access_key=secret_key, config=config)


def parse_s3_url(url: str) -> tuple[str, str | None, str]:
    """(bucket, endpoint or None, region) of ``s3://BUCKET?endpoint=http://host:port&region=us-east-1``."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"endpoint", "region"})
    if parts.scheme != "s3" or parts.path not in ("", "/") or unknown or any(len(v) > 1 for v in query.values()):
        raise ConfigError(f"object store url {url!r}: expected s3://BUCKET[?endpoint=URL][&region=NAME]")
    bucket = parts.netloc
    if not 3 <= len(bucket) <= 63 or not all(c.islower() or c.isdigit() or c in ".-" for c in bucket):
        raise ConfigError(f"object store url {url!r}: bucket names are 3-63 lower-case letters, digits, '.', '-'")
    endpoint = query.get("endpoint", [None])[0]
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"object store url {url!r}: endpoint must be an http:// or https:// URL")
    return bucket, endpoint, query.get("region", ["us-east-1"])[0]
