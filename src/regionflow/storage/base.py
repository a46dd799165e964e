"""The ObjectStore port: what every object storage adapter (directory, S3) promises."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, runtime_checkable

from regionflow.errors import InvalidKey

MAX_KEY_BYTES = 1024
READ_BLOCK = 1 << 20


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    etag: str  # sha256 hex of the content
    version_id: str
    size: int
    content_type: str = "application/octet-stream"
    metadata: dict[str, str] = field(default_factory=dict)
    last_modified: float = 0.0  # unix seconds


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def validate_key(key: str) -> str:
    """Return the key unchanged if it names an object inside the bucket, else raise InvalidKey.

    Refused: empty keys, absolute paths, backslashes, NUL/control characters, '.' or '..' segments,
    empty segments and keys over 1024 bytes. Nothing a key says can leave the bucket.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey("object key is empty")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidKey(f"object key is longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/") or "\\" in key or (len(key) > 1 and key[1] == ":"):
        raise InvalidKey(f"object key {key!r} is an absolute path")
    if _CONTROL.search(key):
        raise InvalidKey(f"object key {key!r} contains a control character")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts[:-1]) or parts[-1] in (".", ".."):
        raise InvalidKey(f"object key {key!r} has an empty, '.' or '..' segment")
    if parts[-1] == "":
        raise InvalidKey(f"object key {key!r} ends with '/'")
    if posixpath.normpath(key) != key:
        raise InvalidKey(f"object key {key!r} is not normalised")
    return key


def data_blocks(data: bytes | BinaryIO | Iterable[bytes], block: int = READ_BLOCK) -> Iterator[bytes]:
    """The blocks of what put() was given: bytes as one block, a binary file read block by block, an
    iterable as it comes. TypeError for str or a file opened in text mode (nothing is guessed)."""
    if isinstance(data, bytes | bytearray | memoryview):
        yield data  # type: ignore[misc]
    elif isinstance(data, str):
        raise TypeError("put() takes bytes, a binary file or an iterable of bytes, not str")
    elif hasattr(data, "read"):
        while chunk := data.read(block):
            if isinstance(chunk, str):
                raise TypeError("put() needs a file opened in binary mode")
            yield chunk
    else:
        yield from data


@runtime_checkable
class ObjectStore(Protocol):
    """A bucket of immutable-per-version objects addressed by validated keys."""

    def put(
        self,
        key: str,
        data: bytes | BinaryIO | Iterable[bytes],
        *,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
        version_id: str | None = None,
    ) -> ObjectInfo:
        """Store data at key atomically (readers see the old object or the new one, never a part).

        A new version id is generated unless one is given (replication keeps the source's id).
        Returns the stored object's info, whose etag is the sha256 hex of the bytes.
        """
        ...

    def get(self, key: str) -> bytes:
        """Return the whole content; raise ObjectNotFound when absent."""
        ...

    def open(self, key: str) -> BinaryIO:
        """Open the object for streaming reads; raise ObjectNotFound when absent. Close it after use."""
        ...

    def read_range(self, key: str, start: int, length: int) -> tuple[ObjectInfo, bytes]:
        """The object's info and its bytes [start, start + length) (fewer past its end), both of the one
        version current when read; raise ObjectNotFound when absent. What a chunk worker reads its byte
        range of an input with: one request, and the info says which version the bytes came from."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """Return the object's info, or None when absent."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with prefix, in key order."""
        ...

    def copy(self, src: str, dst: str, *, metadata: dict[str, str] | None = None) -> ObjectInfo:
        """Copy src to dst (a new version at dst); raise ObjectNotFound when src is absent."""
        ...

    def compose(self, key: str, parts: Iterable[str], *, head: bytes = b"",
                content_type: str = "application/octet-stream", metadata: dict[str, str] | None = None,
                ) -> ObjectInfo:
        """Store at key, atomically and as a new version, head followed by the bytes of each object in
        parts, in order (the version current when it is reached): what a merge writes. The store copies
        without passing the bytes through the caller where it can (the directory store in the kernel).
        ObjectNotFound when a part is absent (nothing is stored then)."""
        ...

    def delete(self, key: str) -> bool:
        """Remove the object; True if it existed. Deleting an absent key is not an error."""
        ...

    def scan(self, prefix: str = "") -> Iterator[tuple[str, str]]:
        """Yield (key, fingerprint) of every object whose key starts with prefix, in key order, as cheaply
        as the store can list (no per-object request). The fingerprint changes when the object is replaced;
        a watcher compares fingerprints between passes to find what is new."""
        ...

    def adopt(self, key: str) -> ObjectInfo | None:
        """The object's info, after giving an object written around regionflow (straight into the bucket by
        an S3 client) regionflow's own metadata in place: its sha256 as the etag and a new version id. The
        bytes, the time and the writer's metadata are kept; an object replaced while it is adopted is left
        to the next call. An object regionflow wrote comes back as head() gives it; None when absent."""
        ...


def compose_by_streaming(store: ObjectStore, key: str, parts: Iterable[str], *, head: bytes,
                         content_type: str, metadata: dict[str, str] | None) -> ObjectInfo:
    """ObjectStore.compose for a store that can only put: the parts are read and written back in blocks."""

    def blocks() -> Iterator[bytes]:
        yield head
        for part in parts:
            with store.open(part) as fh:
                yield from data_blocks(fh)

    return store.put(key, blocks(), content_type=content_type, metadata=metadata)
