"""ObjectStore on a directory: data under objects/<key>, a JSON metadata sidecar under meta/<key>.json.

A put streams into tmp/ while hashing and fsyncs, all outside any lock; then, under a short exclusive
lock on the bucket, it renames the data and then the sidecar into place. Readers that open an object
take the lock shared, so the bytes they get are the ones the sidecar's etag describes, and two puts of
the same key from different processes cannot leave one's data under the other's sidecar.

An object exists exactly when its sidecar does: a crash between the two renames leaves orphan data that
no reader sees and the next put of that key replaces.

Limits of a directory bucket (an S3 bucket has none of them): a key cannot also be a "directory" of
other keys ('a' and 'a/b' cannot both exist, nor 'a' and 'a.json/b'; the later put raises InvalidKey),
each key segment must fit a file name (250 bytes), and on a case-insensitive file system keys that
differ only in case are the same object.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import mmap
import os
import secrets
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from regionflow.errors import InvalidKey, ObjectNotFound
from regionflow.ids import new_version_id
from regionflow.storage.base import ObjectInfo, data_blocks, validate_key

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; single-process use stays correct
    fcntl = None  # type: ignore[assignment]

_META_SUFFIX = ".json"
_MAX_SEGMENT_BYTES = 255 - len(_META_SUFFIX)
_AREAS = ("objects", "meta", "tmp")
# Errors the file system gives when a path runs into a file where a directory should be, or the reverse.
_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)


def _is_key(key: str) -> bool:
    try:
        validate_key(key)
    except InvalidKey:
        return False
    return True


def _may_hold(directory: str, prefix: str) -> bool:
    """Whether keys below directory (which ends with '/') can start with prefix."""
    return directory.startswith(prefix) or prefix.startswith(directory)


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _append_file(src: BinaryIO, out: BinaryIO, digest: Any) -> int:
    """Append all of src to out (flushed, its offset at its end) and to digest; the bytes appended."""
    size = os.fstat(src.fileno()).st_size
    if size == 0:
        return 0
    with mmap.mmap(src.fileno(), size, access=mmap.ACCESS_READ) as mapped:
        digest.update(mapped)
        copied = 0
        try:
            while copied < size:
                n = os.copy_file_range(src.fileno(), out.fileno(), size - copied, copied)
                if n == 0:
                    break
                copied += n
        except OSError:  # (a file system that cannot: copy what is left through the mapping)
            pass
        if copied < size:
            out.write(mapped[copied:])
            out.flush()
    return size


class FileObjectStore:
    """A bucket in a directory; safe for concurrent use by threads and processes on one machine."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        for area in _AREAS:
            (self.root / area).mkdir(parents=True, exist_ok=True)
        real_root = os.path.realpath(self.root)
        self._real_areas = {area: os.path.join(real_root, area) for area in _AREAS}
        self._lock_path = self.root / "lock"
        os.close(os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644))

    def __repr__(self) -> str:
        return f"FileObjectStore({str(self.root)!r})"

    # -- paths and locking -----------------------------------------------------------------------------
    def _path(self, area: str, key: str, suffix: str = "") -> Path:
        validate_key(key)
        try:
            segments = [os.fsencode(s) for s in key.split("/")]
            key.encode("utf-8")  # lone surrogates cannot be stored by S3 either
        except UnicodeError:
            raise InvalidKey(f"object key {key!r} is not valid UTF-8") from None
        if any(len(s) > _MAX_SEGMENT_BYTES for s in segments):
            raise InvalidKey(f"object key {key!r} has a segment longer than {_MAX_SEGMENT_BYTES} bytes")
        path = self.root / area / (key + suffix)
        self._check_inside(area, key, path)
        return path

    def _check_inside(self, area: str, key: str, path: Path) -> None:
        # Defence in depth: validate_key keeps the text inside; this keeps a symlink planted in the
        # bucket (at any depth, the last segment included) from leading out of it. Most paths hold no
        # symlink at all: one lstat per segment below the area proves it (realpath would also resolve every
        # directory above the bucket, in Python, for every path of every call); any symlink met is
        # resolved in full.
        if self._has_symlink(area, path) and not os.path.realpath(path).startswith(
                self._real_areas[area] + os.sep):
            raise InvalidKey(f"object key {key!r} resolves outside the bucket")

    def _has_symlink(self, area: str, path: Path) -> bool:
        """Whether the area's directory or an existing segment of path below it is a symlink."""
        current = os.path.join(self.root, area)
        below = os.fspath(path)[len(current) + 1:]  # path is current/<key>: segments of a valid key
        for segment in ["", *below.split(os.sep)]:
            current = os.path.join(current, segment) if segment else current
            try:
                if stat.S_ISLNK(os.lstat(current).st_mode):
                    return True
            except _MISSING:
                return False  # nothing exists below a missing segment, so nothing there can lead out
        return False

    def data_path(self, key: str) -> Path:
        """The file holding key's current bytes (replaced, never rewritten, by a later put)."""
        return self._data(key)

    def _data(self, key: str) -> Path:
        return self._path("objects", key)

    def _meta(self, key: str) -> Path:
        return self._path("meta", key, _META_SUFFIX)

    @contextlib.contextmanager
    def _locked(self, *, shared: bool = False) -> Iterator[None]:
        if fcntl is None:
            yield
            return
        # A fresh descriptor per use: flock excludes other descriptors, threads of this process
        # included, and a descriptor inherited across fork would share (not exclude) the lock.
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _spool(self, blocks: Iterable[bytes]) -> tuple[str, str, int]:
        """Write blocks to a new temp file, fsynced; return (temp path, sha256 hex, size)."""
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", prefix="put-")
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as fh:
                for block in blocks:
                    digest.update(block)
                    size += memoryview(block).nbytes
                    fh.write(block)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp, digest.hexdigest(), size

    def _make_room(self, area: str, key: str, path: Path) -> None:
        """Create path's parent directories; InvalidKey when another object's file is in the way."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise InvalidKey(f"object key {key!r} runs into an existing object: a directory bucket "
                             "cannot hold both a key and keys below it") from None
        if path.is_dir():
            raise InvalidKey(f"object key {key!r} names a directory of other objects in a directory bucket")
        self._check_inside(area, key, path)  # again, now that the directories exist

    # -- port ------------------------------------------------------------------------------------------
    def put(
        self,
        key: str,
        data: bytes | BinaryIO | Iterable[bytes],
        *,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
        version_id: str | None = None,
    ) -> ObjectInfo:
        """Store data at key atomically (readers see the old object or the new one); see ObjectStore.put."""
        self._data(key), self._meta(key)  # refuse a bad key before reading anything
        tmp_data, etag, size = self._spool(data_blocks(data))
        return self._commit(key, tmp_data, etag, size, content_type=content_type, metadata=metadata,
                            version_id=version_id)

    def _commit(self, key: str, tmp_data: str, etag: str, size: int, *, content_type: str,
                metadata: dict[str, str] | None, version_id: str | None) -> ObjectInfo:
        """Make the spooled file tmp_data the object at key, with a new metadata sidecar (tmp_data is
        consumed either way)."""
        data_path, meta_path = self._data(key), self._meta(key)
        meta = dict(metadata or {})
        pending: list[str] = [tmp_data]
        try:
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
                raise TypeError("object metadata keys and values must be str")
            info = ObjectInfo(key=key, etag=etag, version_id=version_id or new_version_id(), size=size,
                              content_type=content_type, metadata=meta, last_modified=time.time())
            record = {"etag": info.etag, "version_id": info.version_id, "size": info.size,
                      "content_type": info.content_type, "metadata": info.metadata,
                      "last_modified": info.last_modified}
            tmp_meta, _, _ = self._spool([json.dumps(record, ensure_ascii=False).encode()])
            pending.append(tmp_meta)
            with self._locked():
                # Both paths are checked before either rename, so a refusal leaves the old object whole.
                self._make_room("objects", key, data_path)
                try:
                    self._make_room("meta", key, meta_path)
                except InvalidKey:
                    # Directories just made for the data would block a later put of their name.
                    self._prune("objects", data_path.parent)
                    raise
                os.replace(tmp_data, data_path)
                pending.remove(tmp_data)
                os.replace(tmp_meta, meta_path)
                pending.remove(tmp_meta)
                _fsync_dir(data_path.parent)
                _fsync_dir(meta_path.parent)
        finally:
            for tmp in pending:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        return info

    def _read_meta(self, key: str, meta_path: Path | None = None) -> ObjectInfo | None:
        try:
            raw = (meta_path or self._meta(key)).read_bytes()
        except _MISSING:
            return None
        record = json.loads(raw)
        return ObjectInfo(key=key, etag=record["etag"], version_id=record["version_id"], size=record["size"],
                          content_type=record["content_type"], metadata=record["metadata"],
                          last_modified=record["last_modified"])

    def head(self, key: str) -> ObjectInfo | None:
        """Return the object's info, or None when absent."""
        return self._read_meta(key)

    def _open_current(self, key: str) -> tuple[ObjectInfo, BinaryIO]:
        """The object's info and an open handle on the very bytes that info describes."""
        data_path, meta_path = self._data(key), self._meta(key)
        with self._locked(shared=True):
            info = self._read_meta(key, meta_path)
            if info is not None:
                try:
                    # The open descriptor keeps these bytes even if a later put replaces the file.
                    return info, builtins.open(data_path, "rb")
                except _MISSING:
                    pass
        raise ObjectNotFound(f"no object at {key!r}")

    def open(self, key: str) -> BinaryIO:
        """Open the object for streaming reads; raise ObjectNotFound when absent. Close it after use."""
        return self._open_current(key)[1]

    def get(self, key: str) -> bytes:
        """Return the whole content; raise ObjectNotFound when absent."""
        with self.open(key) as fh:
            return fh.read()

    def read_range(self, key: str, start: int, length: int) -> tuple[ObjectInfo, bytes]:
        """The object's info and bytes [start, start + length) of that version; see ObjectStore.read_range."""
        if start < 0 or length < 0:
            raise ValueError("a byte range needs start >= 0 and length >= 0")
        info, fh = self._open_current(key)
        with fh:
            return info, os.pread(fh.fileno(), length, start) if length else b""

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with prefix, in key order."""
        meta_root = os.path.join(self.root, "meta")
        keys: list[str] = []
        for dirpath, dirs, files in os.walk(meta_root):
            rel = os.path.relpath(dirpath, meta_root)
            above = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            # Only descend where a matching key can live: below the prefix, or on the way to it.
            dirs[:] = [d for d in dirs if _may_hold(above + d + "/", prefix)]
            for name in files:
                key = above + name[: -len(_META_SUFFIX)]
                if name.endswith(_META_SUFFIX) and key.startswith(prefix):
                    keys.append(key)
        for key in sorted(keys):
            try:
                info = self._read_meta(key)
            except InvalidKey:  # a stray file or symlink that no put made
                continue
            if info is not None:
                yield info

    def scan(self, prefix: str = "") -> Iterator[tuple[str, str]]:
        """(key, fingerprint) of every object under prefix, in key order, from the directory entries alone
        (a watcher scans every second; reading every sidecar made that grow with the bucket): the
        fingerprint is the sidecar's inode, size and mtime, and every put renames a new sidecar into place."""
        found: list[tuple[str, str]] = []
        pending = [("", os.path.join(self.root, "meta"))]
        while pending:
            above, directory = pending.pop()
            try:
                entries = os.scandir(directory)
            except _MISSING:
                continue
            with entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        if _may_hold(f"{above}{entry.name}/", prefix):
                            pending.append((f"{above}{entry.name}/", entry.path))
                        continue
                    key = above + entry.name[: -len(_META_SUFFIX)]
                    # Only what a put makes: a sidecar file (no symlink) whose name is a key.
                    if (not entry.name.endswith(_META_SUFFIX) or not key.startswith(prefix)
                            or not entry.is_file(follow_symlinks=False) or not _is_key(key)):
                        continue
                    st = entry.stat(follow_symlinks=False)
                    found.append((key, f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"))
        yield from sorted(found)

    def adopt(self, key: str) -> ObjectInfo | None:
        """head(key): a directory bucket holds only objects its puts made, each with its metadata."""
        return self.head(key)

    def copy(self, src: str, dst: str, *, metadata: dict[str, str] | None = None) -> ObjectInfo:
        """Copy src to dst (a new version at dst, same content type); raise ObjectNotFound when src is absent.

        The user metadata is src's unless metadata is given.
        """
        self._data(dst)  # refuse a bad destination before reading anything
        info, fh = self._open_current(src)
        with fh:
            linked = self._link_spool(self._data(src), fh)
            if linked is None:
                return self.put(dst, fh, content_type=info.content_type,
                                metadata=info.metadata if metadata is None else metadata)
            return self._commit(dst, linked, info.etag, info.size, content_type=info.content_type,
                                metadata=info.metadata if metadata is None else metadata, version_id=None)

    def compose(self, key: str, parts: Iterable[str], *, head: bytes = b"",
                content_type: str = "application/octet-stream", metadata: dict[str, str] | None = None,
                ) -> ObjectInfo:
        """head and then the parts' bytes at key; see ObjectStore.compose. The kernel copies the parts
        (copy_file_range) and the hash reads them mapped: none of their bytes pass through Python."""
        self._data(key), self._meta(key)  # refuse a bad key before copying anything
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", prefix="put-")
        digest, size = hashlib.sha256(head), len(head)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(head)
                out.flush()
                for part in parts:
                    _, src = self._open_current(part)
                    with src:
                        size += _append_file(src, out, digest)
                os.fsync(out.fileno())
        except BaseException:
            os.unlink(tmp)
            raise
        return self._commit(key, tmp, digest.hexdigest(), size, content_type=content_type, metadata=metadata,
                            version_id=None)

    def _link_spool(self, path: Path, fh: BinaryIO) -> str | None:
        """A temp name for the very file fh reads, found at path (a hard link: object files are never
        written in place, so a copy may share them); None where links are not possible or path was
        replaced since fh was opened."""
        tmp = os.path.join(self.root, "tmp", f"link-{secrets.token_hex(8)}")
        try:
            os.link(path, tmp, follow_symlinks=False)
        except OSError:
            return None
        linked, opened = os.stat(tmp, follow_symlinks=False), os.fstat(fh.fileno())
        if (linked.st_dev, linked.st_ino) != (opened.st_dev, opened.st_ino):
            os.unlink(tmp)
            return None
        return tmp

    def delete(self, key: str) -> bool:
        """Remove the object; True if it existed. Deleting an absent key is not an error."""
        meta_path, data_path = self._meta(key), self._data(key)
        with self._locked():
            existed = meta_path.is_file()
            # The sidecar goes first: from then on the object is absent for every reader.
            for area, path in (("meta", meta_path), ("objects", data_path)):
                if path.is_file() or path.is_symlink():
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                self._prune(area, path.parent)
        return existed

    def _prune(self, area: str, directory: Path) -> None:
        # Empty directories left behind would block a later put of a key with that name.
        top = self.root / area
        while directory != top and top in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent
