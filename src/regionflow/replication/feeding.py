"""An ObjectStore wrapper that records every put, copy and delete in the region's change feed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import BinaryIO

from regionflow.state.base import StateStore
from regionflow.storage.base import ObjectInfo, ObjectStore


def object_image(info: ObjectInfo) -> dict:
    return asdict(info)


class FeedingObjectStore:
    """Writes go to the inner store first, then into the feed: the feed never names an object that is not
    there. (A crash between the two leaves an object that only a later put of the key replicates.)"""

    def __init__(self, inner: ObjectStore, state: StateStore):
        self.inner = inner
        self.state = state

    def record(self, info: ObjectInfo) -> None:
        """Feed an object written by someone else on this store (a worker process)."""
        self.state.record_object_change(info.key, object_image(info))

    def put(self, key: str, data: bytes | BinaryIO | Iterable[bytes], *,
            content_type: str = "application/octet-stream", metadata: dict[str, str] | None = None,
            version_id: str | None = None) -> ObjectInfo:
        info = self.inner.put(key, data, content_type=content_type, metadata=metadata, version_id=version_id)
        self.record(info)
        return info

    def copy(self, src: str, dst: str, *, metadata: dict[str, str] | None = None) -> ObjectInfo:
        info = self.inner.copy(src, dst, metadata=metadata)
        self.record(info)
        return info

    def compose(self, key: str, parts: Iterable[str], *, head: bytes = b"",
                content_type: str = "application/octet-stream", metadata: dict[str, str] | None = None,
                ) -> ObjectInfo:
        info = self.inner.compose(key, parts, head=head, content_type=content_type, metadata=metadata)
        self.record(info)
        return info

    def delete(self, key: str) -> bool:
        existed = self.inner.delete(key)
        if existed:
            self.state.record_object_change(key, None)
        return existed

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def open(self, key: str) -> BinaryIO:
        return self.inner.open(key)

    def read_range(self, key: str, start: int, length: int) -> tuple[ObjectInfo, bytes]:
        return self.inner.read_range(key, start, length)

    def head(self, key: str) -> ObjectInfo | None:
        return self.inner.head(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def scan(self, prefix: str = "") -> Iterator[tuple[str, str]]:
        return self.inner.scan(prefix)

    def adopt(self, key: str) -> ObjectInfo | None:
        # Adopting rewrites only metadata in place; the watcher feeds what it adopts itself.
        return self.inner.adopt(key)
