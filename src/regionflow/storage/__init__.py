"""Object storage: the ObjectStore port and its adapters, chosen by URL."""

from regionflow.storage.base import ObjectInfo, ObjectStore, validate_key

__all__ = ["ObjectInfo", "ObjectStore", "validate_key", "open_object_store"]


def open_object_store(url: str) -> ObjectStore:
    """Return the adapter for url: file:///path/to/bucket-dir (s3:// comes with the real backends)."""
    from regionflow.errors import ConfigError

    if url.startswith("file://"):
        from regionflow.storage.file import FileObjectStore

        return FileObjectStore(url[len("file://") :])
    raise ConfigError(f"object store url {url!r}: unsupported scheme (expected file://)")
