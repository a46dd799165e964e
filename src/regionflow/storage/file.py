"""ObjectStore on a directory: data under objects/, a JSON metadata sidecar under meta/.

A put streams into tmp/ while hashing, fsyncs, then renames into place; readers see the old object or
the new one. The metadata sidecar is written after the data and names the data's etag, so head() and
get() agree on what is there: an object exists when its sidecar does.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from regionflow.errors import InvalidKey, ObjectNotFound
from regionflow.ids import new_version_id
from regionflow.storage.base import ObjectInfo, validate_key

_BLOCK = 1 << 20


def _blocks(data: bytes | BinaryIO | Iterable[bytes]) -> Iterator[bytes]:
    if isinstance(data, bytes | bytearray | memoryview):
        yield bytes(data)
    elif hasattr(data, "read"):
        while block := data.read(_BLOCK):  # type: ignore[union-attr]
            yield block
    else:
        yield from data  # type: ignore[misc]


class FileObjectStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        for sub in ("objects", "meta", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._real_root = os.path.realpath(self.root)

    def __repr__(self) -> str:
        return f"FileObjectStore({str(self.root)!r})"

    # -- paths ---------------------------------------------------------------------------------------
    def _path(self, area: str, key: str, suffix: str = "") -> Path:
        validate_key(key)
        path = self.root / area / (key + suffix)
        # Defence in depth: a symlink planted inside the bucket must not lead out of it.
        real = os.path.realpath(path)
        if not real.startswith(os.path.join(self._real_root, area) + os.sep):
            raise InvalidKey(f"object key {key!r} resolves outside the bucket")
        return path

    def _data(self, key: str) -> Path:
        return self._path("objects", key)

    def _meta(self, key: str) -> Path:
        return self._path("meta", key, ".json")

    def _atomic_write(self, dest: Path, blocks: Iterable[bytes]) -> tuple[str, int]:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", prefix="put-")
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as fh:
                for block in blocks:
                    digest.update(block)
                    size += len(block)
                    fh.write(block)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest.hexdigest(), size

    # -- port ----------------------------------------------------------------------------------------
    def put(self, key: str, data: bytes | BinaryIO | Iterable[bytes], *,
            content_type: str = "application/octet-stream", metadata: dict[str, str] | None = None,
            version_id: str | None = None) -> ObjectInfo:
        """Store data at key atomically; see ObjectStore.put."""
        data_path, meta_path = self._data(key), self._meta(key)
        etag, size = self._atomic_write(data_path, _blocks(data))
        info = ObjectInfo(key=key, etag=etag, version_id=version_id or new_version_id(), size=size,
                          content_type=content_type, metadata=dict(metadata or {}), last_modified=time.time())
        record = {"etag": info.etag, "version_id": info.version_id, "size": size,
                  "content_type": content_type, "metadata": info.metadata, "last_modified": info.last_modified}
        self._atomic_write(meta_path, [json.dumps(record).encode()])
        return info

    def _read_meta(self, key: str) -> ObjectInfo | None:
        try:
            record = json.loads(self._meta(key).read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            return None
        return ObjectInfo(key=key, etag=record["etag"], version_id=record["version_id"], size=record["size"],
                          content_type=record["content_type"], metadata=record["metadata"],
                          last_modified=record["last_modified"])

    def head(self, key: str) -> ObjectInfo | None:
        """The object's info, or None when absent."""
        return self._read_meta(key)

    def open(self, key: str) -> BinaryIO:
        """Open for streaming reads; ObjectNotFound when absent."""
        if self._read_meta(key) is None:
            raise ObjectNotFound(f"no object at {key!r}")
        try:
            return self._data(key).open("rb")
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"no object at {key!r}") from None

    def get(self, key: str) -> bytes:
        """The whole content; ObjectNotFound when absent."""
        with self.open(key) as fh:
            return fh.read()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with prefix, in key order."""
        meta_root = self.root / "meta"
        # Only walk the directory the prefix can be in.
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = meta_root / base if base else meta_root
        if base:
            try:
                validate_key(base)
            except InvalidKey:
                return
        if not start.is_dir():
            return
        keys = []
        for dirpath, _dirs, files in os.walk(start):
            rel_dir = os.path.relpath(dirpath, meta_root)
            for name in files:
                if not name.endswith(".json"):
                    continue
                key = name[:-5] if rel_dir == "." else f"{rel_dir}/{name[:-5]}"
                if key.startswith(prefix):
                    keys.append(key)
        for key in sorted(keys):
            info = self._read_meta(key)
            if info is not None:
                yield info

    def copy(self, src: str, dst: str, *, metadata: dict[str, str] | None = None) -> ObjectInfo:
        """Copy src to a new version at dst; ObjectNotFound when src is absent."""
        info = self._read_meta(src)
        if info is None:
            raise ObjectNotFound(f"no object at {src!r}")
        with self.open(src) as fh:
            return self.put(dst, fh, content_type=info.content_type,
                            metadata=info.metadata if metadata is None else metadata)

    def delete(self, key: str) -> bool:
        """Remove the object; True if it existed."""
        meta_path, data_path = self._meta(key), self._data(key)
        existed = meta_path.exists()
        # The sidecar goes first: from then on the object is absent for every reader.
        meta_path.unlink(missing_ok=True)
        data_path.unlink(missing_ok=True)
        return existed
