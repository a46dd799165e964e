"""ObjectStore on the S3 API through boto3 (SeaweedFS, MinIO, AWS S3), with exactly file.py's semantics.

What regionflow needs that S3 does not give is kept in reserved user-metadata entries of each object:
``rf-sha256`` (the etag: S3's own ETag is an MD5, or a hash of part hashes after a multipart upload),
``rf-version`` (the version id: replication stores a copy under the source's id, which S3 cannot be told
to use), ``rf-mtime`` (put time in unix seconds, exact; S3's Last-Modified has whole seconds), ``rf-type`` (the
content type as given: SeaweedFS replaces application/octet-stream by a guess from the key's suffix) and
the user metadata (as plain entries, the way an S3 client writes them, when the keys are lower-case ASCII
and the values printable ASCII; otherwise as ``rf-meta``, base64url of UTF-8 JSON, because S3 lower-cases
metadata keys and allows only ASCII values). An object written around regionflow (no ``rf-sha256``) is
listed with etag "" and S3's own version id and time until ``adopt()`` gives it those entries in place.

Bucket versioning is neither needed nor turned on (docs/backends.md "Object store on S3" has the
measurements): a GET is one request, and the server answers it from one version of the object however
long the reader takes and whatever is put or deleted meanwhile; the metadata come in the same answer.

Puts are atomic because S3 makes an object visible only once its upload completes. The sha256 must be
known before the upload starts (it goes in the metadata, which S3 sets at the start), so a seekable file
is hashed in a first pass and then uploaded, and anything else (an iterator, a pipe) is first spooled to a
temporary file (in memory up to one part) while it is hashed; a stream that fails therefore fails before
any request. Objects over one part (8 MiB) are uploaded in parts by boto3's transfer manager, which aborts
the multipart upload when a part fails. A seekable file must not change while it is being put.

Errors: ObjectNotFound and InvalidKey as the port says (keys are checked before any request);
StoreUnavailable, with a one-line reason, when the endpoint cannot be reached, times out, refuses the
credentials or has no such bucket. Timeouts are short (connect 1 s, read 3 s, one retry), so a region
notices a dead or frozen store within seconds; server-side copies and multipart uploads get a longer
read timeout.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import io
import json
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

from regionflow.errors import InvalidKey, ObjectNotFound, StoreUnavailable
from regionflow.ids import new_version_id
from regionflow.storage.base import ObjectInfo, compose_by_streaming, data_blocks, validate_key
from regionflow.storage.s3_client import make_client

__all__ = ["PART_SIZE", "S3ObjectStore"]

PART_SIZE = 8 << 20  # the multipart threshold and part size
_MAX_PARTS = 9000  # S3 allows 10000; a margin for rounding
_COPY_LIMIT = 5 << 30  # the largest object one CopyObject request may copy
_SHA, _VERSION, _MTIME, _TYPE, _META = "rf-sha256", "rf-version", "rf-mtime", "rf-type", "rf-meta"
_RESERVED = "rf-"
_LIST_HEADS = 8  # heads in flight while listing
# Headers of an object an S3 client may have set that an in-place metadata rewrite must carry over.
_KEPT_HEADERS = ("CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage", "Expires")
_PLAIN_KEY = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_NOT_FOUND = ("404", "NoSuchKey", "NotFound")
_DENIED = ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidSecurity")


def _code(exc: Exception) -> str:
    from botocore.exceptions import ClientError

    return str(exc.response.get("Error", {}).get("Code", "")) if isinstance(exc, ClientError) else ""


class _Changed(Exception):
    """A conditional request found the object changed (HTTP 412)."""


def _check_key(key: str) -> str:
    validate_key(key)
    try:
        key.encode("utf-8")  # lone surrogates: S3 keys are UTF-8
    except UnicodeError:
        raise InvalidKey(f"object key {key!r} is not valid UTF-8") from None
    return key


class _Body(io.RawIOBase):
    """A GET's streaming body as a raw stream whose transport errors are StoreUnavailable."""

    def __init__(self, body: Any, where: str):
        self._body, self._where = body, where

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError

        try:
            data = self._body.read(len(buffer))
        except (BotoCoreError, HTTPError, OSError) as exc:
            raise StoreUnavailable(f"reading {self._where} failed: {type(exc).__name__}: {exc}") from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3ObjectStore:
    """A bucket on an S3 endpoint; thread-safe (one boto3 client). Worker processes open their own from
    the URL (``url``) rather than receiving this object."""

    def __init__(self, bucket: str, *, endpoint: str | None = None, region: str = "us-east-1",
                 access_key: str | None = None, secret_key: str | None = None, part_size: int = PART_SIZE,
                 connect_timeout: float = 1.0, read_timeout: float = 3.0, spool_dir: str | None = None):
        self.bucket, self.endpoint, self.region = bucket, endpoint, region
        self.part_size = part_size
        self.spool_dir = spool_dir
        self._client = make_client(endpoint, access_key, secret_key, region=region,
                                   connect_timeout=connect_timeout, read_timeout=read_timeout)
        # Server-side work (a copy, completing a multipart upload) answers only when done.
        self._slow = make_client(endpoint, access_key, secret_key, region=region, connect_timeout=connect_timeout,
                                 read_timeout=max(60.0, read_timeout))

    @property
    def url(self) -> str:
        """The s3:// URL that opens this bucket again (credentials are not part of it)."""
        query = f"?endpoint={self.endpoint}" if self.endpoint else ""
        region = f"{'&' if query else '?'}region={self.region}" if self.region != "us-east-1" else ""
        return f"s3://{self.bucket}{query}{region}"

    def __repr__(self) -> str:
        return f"S3ObjectStore({self.url!r})"

    # -- errors ------------------------------------------------------------------------------------------
    def _unavailable(self, exc: Exception, doing: str) -> StoreUnavailable:
        """The StoreUnavailable that says in one line why doing failed."""
        code = _code(exc)
        where = f"bucket {self.bucket!r} at {self.endpoint or 'AWS S3'}"
        if code in _DENIED:
            why = f"access denied ({code}): check the access key and secret key"
        elif code == "NoSuchBucket":
            why = "the bucket does not exist"
        elif type(exc).__name__ == "NoCredentialsError":
            why = "no credentials: give an access key and secret key, or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        else:
            text = str(exc).strip().splitlines()
            why = f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
        return StoreUnavailable(f"object store {where}: {doing} failed: {why}")

    @contextlib.contextmanager
    def _calling(self, doing: str, *, absent: str | None = None) -> Iterator[None]:
        """Turn boto3's errors into ours: ObjectNotFound naming absent (when given) for a missing object,
        _Changed for a failed precondition, StoreUnavailable for everything else."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            code = _code(exc)
            if absent is not None and code in _NOT_FOUND:
                raise ObjectNotFound(f"no object at {absent!r}") from None
            if code in ("412", "PreconditionFailed"):
                raise _Changed(doing) from None
            raise self._unavailable(exc, doing) from None
        except (BotoCoreError, Boto3Error) as exc:
            raise self._unavailable(exc, doing) from None

    # -- metadata ----------------------------------------------------------------------------------------
    @staticmethod
    def _encode(info: ObjectInfo) -> dict[str, str]:
        meta = {_SHA: info.etag, _VERSION: info.version_id, _MTIME: repr(info.last_modified),
                _TYPE: info.content_type}
        if info.metadata and _plain(info.metadata):
            meta.update(info.metadata)  # as an S3 client would have written them: x-amz-meta-<key>
        elif info.metadata:
            raw = json.dumps(info.metadata, ensure_ascii=False, sort_keys=True).encode("utf-8")
            meta[_META] = base64.urlsafe_b64encode(raw).decode("ascii")
        return meta

    @staticmethod
    def _decode(key: str, answer: Any) -> ObjectInfo:
        meta = answer.get("Metadata") or {}
        if _META in meta:
            user = json.loads(base64.urlsafe_b64decode(meta[_META]))
        else:
            user = {k: v for k, v in meta.items() if not k.startswith(_RESERVED)}
        modified = float(meta[_MTIME]) if _MTIME in meta else answer["LastModified"].timestamp()
        return ObjectInfo(key=key, etag=meta.get(_SHA, ""), size=int(answer["ContentLength"]),
                          version_id=meta.get(_VERSION) or answer.get("VersionId", ""),
                          content_type=meta.get(_TYPE) or answer.get("ContentType") or "application/octet-stream",
                          metadata=user, last_modified=modified)

    # -- put ---------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _source(self, data: bytes | BinaryIO | Iterable[bytes]) -> Iterator[tuple[bytes | BinaryIO, str, int]]:
        """(bytes or a binary file positioned at the content, sha256 hex, size), all known before upload."""
        if isinstance(data, bytes | bytearray | memoryview):
            body = bytes(data)
            yield body, hashlib.sha256(body).hexdigest(), len(body)
            return
        if not isinstance(data, str) and hasattr(data, "read") and _seekable(data):
            fh: BinaryIO = data  # type: ignore[assignment]
            start = fh.tell()
            digest, size = hashlib.sha256(), 0
            for block in data_blocks(fh):
                digest.update(block)
                size += len(block)
            fh.seek(start)
            yield fh, digest.hexdigest(), size
            return
        with tempfile.SpooledTemporaryFile(max_size=self.part_size, dir=self.spool_dir) as spool:
            digest, size = hashlib.sha256(), 0
            for block in data_blocks(data):
                digest.update(block)
                size += memoryview(block).nbytes
                spool.write(block)
            spool.seek(0)
            yield spool, digest.hexdigest(), size  # type: ignore[misc]

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
        _check_key(key)
        meta = dict(metadata or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
            raise TypeError("object metadata keys and values must be str")
        with self._source(data) as (body, etag, size):
            info = ObjectInfo(key=key, etag=etag, version_id=version_id or new_version_id(), size=size,
                              content_type=content_type, metadata=meta, last_modified=time.time())
            headers = self._encode(info)
            with self._calling(f"put {key!r}"):
                if size <= self.part_size:
                    payload = body if isinstance(body, bytes) else body.read()
                    self._client.put_object(Bucket=self.bucket, Key=key, Body=payload, ContentType=content_type,
                                            Metadata=headers)
                else:
                    self._upload_parts(key, io.BytesIO(body) if isinstance(body, bytes) else body, size,
                                       content_type, headers)
        return info

    def _upload_parts(self, key: str, fh: BinaryIO, size: int, content_type: str, headers: dict[str, str]) -> None:
        from boto3.s3.transfer import TransferConfig

        part = max(self.part_size, -(-size // _MAX_PARTS))
        config = TransferConfig(multipart_threshold=self.part_size, multipart_chunksize=part, max_concurrency=4)
        # The transfer manager sends parts from several threads and aborts the upload if one fails.
        self._slow.upload_fileobj(fh, self.bucket, key, Config=config,
                                  ExtraArgs={"ContentType": content_type, "Metadata": headers})

    # -- read --------------------------------------------------------------------------------------------
    def _head(self, key: str) -> Any | None:
        try:
            with self._calling(f"head {key!r}", absent=key):
                return self._client.head_object(Bucket=self.bucket, Key=key)
        except ObjectNotFound:
            return None

    def head(self, key: str) -> ObjectInfo | None:
        """Return the object's info, or None when absent."""
        _check_key(key)
        answer = self._head(key)
        return None if answer is None else self._decode(key, answer)

    def _get(self, key: str) -> Any:
        with self._calling(f"get {key!r}", absent=key):
            return self._client.get_object(Bucket=self.bucket, Key=key)

    def open(self, key: str) -> BinaryIO:
        """Open the object for streaming reads; raise ObjectNotFound when absent. Close it after use.

        One GET: the bytes are those of the version current when it was opened, to the end."""
        _check_key(key)
        answer = self._get(key)
        return io.BufferedReader(_Body(answer["Body"], f"{key!r}"), buffer_size=1 << 20)

    def get(self, key: str) -> bytes:
        """Return the whole content; raise ObjectNotFound when absent."""
        with self.open(key) as fh:
            return fh.read()

    def read_range(self, key: str, start: int, length: int) -> tuple[ObjectInfo, bytes]:
        """Info and bytes [start, start + length) of one version from one ranged GET; see ObjectStore.read_range."""
        from botocore.exceptions import ClientError

        _check_key(key)
        if start < 0 or length < 0:
            raise ValueError("a byte range needs start >= 0 and length >= 0")
        answer = None
        with self._calling(f"get {key!r}", absent=key):
            try:
                if length:
                    answer = self._client.get_object(Bucket=self.bucket, Key=key,
                                                     Range=f"bytes={start}-{start + length - 1}")
            except ClientError as exc:
                if _code(exc) not in ("416", "InvalidRange"):
                    raise
        if answer is None:  # nothing to read: an empty range, or one starting at or past the end
            if (info := self.head(key)) is None:
                raise ObjectNotFound(f"no object at {key!r}")
            return info, b""
        with io.BufferedReader(_Body(answer["Body"], f"{key!r}"), buffer_size=1 << 20) as fh:
            data = fh.read()
        total = answer.get("ContentRange", "").rpartition("/")[2]
        info = self._decode(key, answer)  # (its size is the range's: the whole object's is after the /)
        return (dataclasses.replace(info, size=int(total)) if total.isdigit() else info), data

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with prefix, in key order, each with head()'s info."""
        try:
            prefix.encode("utf-8")
        except UnicodeError:
            return
        keys: list[str] = []
        with self._calling(f"list {prefix!r}"):
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(o["Key"] for o in page.get("Contents", []) if "Key" in o)
        # S3 promises UTF-8 byte order, which is code point order; SeaweedFS lists directory by directory
        # ('a/x' before 'a-b'), so the order is made here.
        keys = sorted(k for k in keys if _valid(k))
        with ThreadPoolExecutor(_LIST_HEADS, thread_name_prefix="s3-list") as pool:
            for start in range(0, len(keys), 64):
                batch = keys[start:start + 64]
                for key, answer in zip(batch, pool.map(self._head, batch), strict=True):
                    if answer is not None:  # deleted since it was listed
                        yield self._decode(key, answer)

    # -- watching ----------------------------------------------------------------------------------------
    def scan(self, prefix: str = "") -> Iterator[tuple[str, str]]:
        """(key, fingerprint) of every object under prefix, in key order, from the listing alone: the
        fingerprint is S3's ETag, size and modification time."""
        try:
            prefix.encode("utf-8")
        except UnicodeError:
            return
        found: list[tuple[str, str]] = []
        with self._calling(f"list {prefix!r}"):
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                found.extend((o["Key"], f"{o['ETag']}:{o['Size']}:{o['LastModified'].timestamp()!r}")
                             for o in page.get("Contents", []) if "Key" in o and _valid(o["Key"]))
        yield from sorted(found)

    def adopt(self, key: str) -> ObjectInfo | None:
        """The object's info; an object written around regionflow (no rf-sha256) first gets regionflow's
        metadata by a copy onto itself, conditional on its S3 ETag, so that an object replaced meanwhile
        is not overwritten with the one that was hashed. The bytes (and so S3's ETag), the writer's time
        (as regionflow's; the store may stamp the copy's Last-Modified anew), metadata and content headers
        stay as they were."""
        _check_key(key)
        for _ in range(5):
            answer = self._head(key)
            if answer is None:
                return None
            meta = answer.get("Metadata") or {}
            if _SHA in meta:
                return self._decode(key, answer)
            if int(answer["ContentLength"]) > _COPY_LIMIT:
                raise StoreUnavailable(f"object store bucket {self.bucket!r}: {key!r} is larger than 5 GiB, "
                                       "the most an S3 copy can give regionflow's metadata")
            try:
                digest = self._sha256_of(key, answer["ETag"])
                info = ObjectInfo(key=key, etag=digest, version_id=new_version_id(),
                                  size=int(answer["ContentLength"]),
                                  content_type=answer.get("ContentType") or "application/octet-stream",
                                  metadata={k: v for k, v in meta.items() if not k.startswith(_RESERVED)},
                                  last_modified=answer["LastModified"].timestamp())
                kept = {h: answer[h] for h in _KEPT_HEADERS if answer.get(h)}
                with self._calling(f"adopt {key!r}", absent=key):
                    self._slow.copy_object(
                        Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": key},
                        CopySourceIfMatch=answer["ETag"], IfMatch=answer["ETag"], MetadataDirective="REPLACE",
                        ContentType=info.content_type, Metadata={**info.metadata, **self._encode(info)}, **kept)
            except (_Changed, ObjectNotFound):
                continue  # replaced or deleted since the head: look again
            return info
        raise StoreUnavailable(f"object store bucket {self.bucket!r}: adopt {key!r} failed: it kept changing")

    def _sha256_of(self, key: str, etag: str) -> str:
        """The sha256 of key's bytes, read with one GET that must still be the object whose ETag is etag."""
        with self._calling(f"get {key!r}", absent=key):
            answer = self._client.get_object(Bucket=self.bucket, Key=key, IfMatch=etag)
        digest = hashlib.sha256()
        with io.BufferedReader(_Body(answer["Body"], f"{key!r}"), buffer_size=1 << 20) as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()

    # -- copy / compose / delete -------------------------------------------------------------------------
    def compose(self, key: str, parts: Iterable[str], *, head: bytes = b"",
                content_type: str = "application/octet-stream", metadata: dict[str, str] | None = None,
                ) -> ObjectInfo:
        """head and then the parts' bytes at key, read and uploaded again: the sha256 (the etag) needs every
        byte, so a server-side UploadPartCopy would not spare the read."""
        return compose_by_streaming(self, key, parts, head=head, content_type=content_type, metadata=metadata)

    def copy(self, src: str, dst: str, *, metadata: dict[str, str] | None = None) -> ObjectInfo:
        """Copy src to dst server-side (a new version at dst, same content type); raise ObjectNotFound when
        src is absent. The user metadata is src's unless metadata is given."""
        _check_key(src)
        _check_key(dst)
        for _ in range(5):
            answer = self._head(src)
            if answer is None:
                raise ObjectNotFound(f"no object at {src!r}")
            source = self._decode(src, answer)
            meta = source.metadata if metadata is None else dict(metadata)
            if source.size > _COPY_LIMIT:
                with self.open(src) as fh:
                    return self.put(dst, fh, content_type=source.content_type, metadata=meta)
            info = ObjectInfo(key=dst, etag=source.etag, version_id=new_version_id(), size=source.size,
                              content_type=source.content_type, metadata=meta, last_modified=time.time())
            try:
                with self._calling(f"copy {src!r} to {dst!r}", absent=src):
                    # If-Match: the bytes copied are the ones whose sha256 the head gave.
                    self._slow.copy_object(Bucket=self.bucket, Key=dst, CopySource={"Bucket": self.bucket, "Key": src},
                                           CopySourceIfMatch=answer["ETag"], MetadataDirective="REPLACE",
                                           ContentType=source.content_type, Metadata=self._encode(info))
            except _Changed:
                continue  # src was replaced between the head and the copy: copy the new one
            return info
        raise StoreUnavailable(f"object store bucket {self.bucket!r}: copy {src!r} failed: it kept changing")

    def delete(self, key: str) -> bool:
        """Remove the object; True if it existed. Deleting an absent key is not an error."""
        _check_key(key)
        if self._head(key) is None:
            return False
        with self._calling(f"delete {key!r}"):
            self._client.delete_object(Bucket=self.bucket, Key=key)
        return True


def _seekable(fh: Any) -> bool:
    try:
        return bool(fh.seekable()) and fh.tell() >= 0
    except (AttributeError, OSError, ValueError):
        return False


def _plain(metadata: dict[str, str]) -> bool:
    """Whether user metadata round-trips as plain x-amz-meta-* headers: lower-case keys that are not
    regionflow's own, printable ASCII values without edge spaces."""
    return all(_PLAIN_KEY.match(k) and not k.startswith(_RESERVED) and v == v.strip()
               and all(" " <= c <= "~" for c in v) for k, v in metadata.items())


def _valid(key: str) -> bool:
    try:
        _check_key(key)
    except InvalidKey:
        return False  # an object no put of ours could have made
    return True
