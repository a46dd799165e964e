"""Object storage: the ObjectStore port and its adapters, chosen by URL."""

from regionflow.storage.base import ObjectInfo, ObjectStore, validate_key

__all__ = ["ObjectInfo", "ObjectStore", "validate_key", "open_object_store"]


def open_object_store(url: str, *, access_key: str | None = None, secret_key: str | None = None) -> ObjectStore:
    """Return the adapter for url.

    - ``file:///path/to/bucket-dir``: a directory bucket (storage/file.py).
    - ``s3://BUCKET?endpoint=http://127.0.0.1:8333[&region=us-east-1]``: a bucket on an S3 endpoint
      (storage/s3.py; no endpoint means AWS). With access_key and secret_key None, boto3's default
      credential chain applies (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, a role).

    ConfigError for another scheme or a malformed s3:// URL.
    """
    from regionflow.errors import ConfigError

    if url.startswith("file://"):
        from regionflow.storage.file import FileObjectStore

        return FileObjectStore(url[len("file://") :])
    if url.startswith("s3://"):
        from regionflow.storage.s3 import S3ObjectStore
        from regionflow.storage.s3_client import parse_s3_url

        bucket, endpoint, region = parse_s3_url(url)
        return S3ObjectStore(bucket, endpoint=endpoint, region=region, access_key=access_key, secret_key=secret_key)
    raise ConfigError(f"object store url {url!r}: unsupported scheme (expected file:// or s3://)")
