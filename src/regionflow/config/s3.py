"""What S3 clients of the access point need from the topology: each region's S3 endpoint (when the access
point can pass S3 through to them) and the endpoint, bucket and keys to give an S3 client."""

from __future__ import annotations

from typing import Any

from regionflow.config.model import Config
from regionflow.config.secrets import load_secrets
from regionflow.errors import ConfigError


def s3_endpoints(config: Config) -> dict[str, str]:
    """{region: S3 endpoint} when every region's store is a bucket named like the access point's on an S3
    endpoint (the access point then passes S3 requests through unchanged); ConfigError saying why not."""
    from regionflow.storage.s3_client import parse_s3_url

    endpoints: dict[str, str] = {}
    for rc in config.regions:
        if not rc.store_url.startswith("s3://"):
            raise ConfigError(f"region {rc.name} keeps its objects in {rc.objects}, not on an S3 endpoint "
                              "(regionflow init --servers gives every region one)")
        bucket, endpoint, _ = parse_s3_url(rc.store_url)
        if endpoint is None or bucket != config.access_point.bucket:
            raise ConfigError(f"region {rc.name}'s bucket is {bucket!r} at {endpoint or 'AWS'}; the access point "
                              f"passes S3 through only to a bucket named {config.access_point.bucket!r} "
                              "([access_point] bucket) on an s3_endpoint")
        endpoints[rc.name] = endpoint.rstrip("/")
    return endpoints


def s3_access(config: Config) -> dict[str, Any]:
    """What an S3 client needs to use the access point: endpoint, bucket, keys (and the CA bundle with TLS),
    plus whether the access point passes S3 through and, if not, why. ConfigError when the secrets file has
    no S3 keys."""
    secrets = load_secrets(config)
    if secrets.s3_access_key is None:
        raise ConfigError(f"{config.secrets_file} has no S3 keys: `regionflow init --upgrade-secrets --servers` "
                          "adds them (the regions' S3 stores must then take them too)")
    try:
        s3_endpoints(config)
        why_not = None
    except ConfigError as exc:
        why_not = str(exc)
    return {"endpoint_url": config.access_point_url, "bucket": config.access_point.bucket,
            "aws_access_key_id": secrets.s3_access_key, "aws_secret_access_key": secrets.s3_secret_key,
            "region": "us-east-1", "ca_bundle": config.tls_ca, "s3_passthrough": why_not is None,
            "why_not": why_not}
