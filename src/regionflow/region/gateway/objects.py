"""Objects: upload (the trigger of the batch workload), download, head, presigned links, and the
internal read other regions' replicators use."""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from regionflow.api import routes
from regionflow.api.wire import object_headers
from regionflow.crashpoints import crash_point
from regionflow.errors import InvalidKey, InvalidSignature, ObjectNotFound
from regionflow.ids import job_id_for
from regionflow.region.auth import TokenCheck
from regionflow.region.runtime import Region
from regionflow.replication.replicator import ReplicationPaused
from regionflow.replication.source import SourceUnavailable
from regionflow.state.base import Change
from regionflow.state.schema import OBJECTS_FEED
from regionflow.storage.base import validate_key
from regionflow.storage.presign import verify
from regionflow.workloads.batch.orchestrator import INPUT_PREFIX

_STREAM_BLOCK = 1 << 20
_IN_MEMORY = 8 << 20  # uploads up to this size are not spooled to disk before they are stored


class InlineObject(BaseModel):
    key: str
    version_id: str
    data: str  # base64


class UploadChanges(BaseModel):
    source: str
    changes: list[dict[str, Any]]
    inline: list[InlineObject] = []


async def receive_upload(request: Request, directory: Path, limit: int) -> bytes | Path:
    """Read the request body: an upload up to _IN_MEMORY bytes stays in memory, a larger one streams into
    a new file in directory as it arrives, in blocks, off the event loop (memory stays bounded whatever its
    size). 413, and nothing kept, once it passes limit bytes."""
    size, pending = 0, bytearray()
    path: Path | None = None
    fh: BinaryIO | None = None
    try:
        async for block in request.stream():
            size += len(block)
            if size > limit:
                raise HTTPException(413, f"the upload is larger than {limit} bytes, the most this region accepts")
            pending += block
            if fh is None and len(pending) > _IN_MEMORY:
                directory.mkdir(parents=True, exist_ok=True)
                fd, name = tempfile.mkstemp(dir=directory, prefix="upload-")
                path, fh = Path(name), os.fdopen(fd, "wb")
            if fh is not None and len(pending) >= _STREAM_BLOCK:
                await run_in_threadpool(fh.write, bytes(pending))
                pending.clear()
        if fh is None:
            return bytes(pending)
        await run_in_threadpool(fh.write, bytes(pending))
        fh.close()
        assert path is not None
        return path
    except BaseException:
        if fh is not None:
            fh.close()
        if path is not None:
            path.unlink(missing_ok=True)
        raise


def store_upload(region: Region, key: str, body: bytes | Path, content_type: str) -> dict[str, Any]:
    """Store a received upload, start its job (active region), and wait for the other regions as the
    replication mode says; the answer for the client. Runs in a worker thread: it blocks."""
    since = region.state.feed_head()
    # The job starts only once the other regions hold the input: a region that dies before it can answer
    # must not have processed an upload the client will send again (the sweep waits too).
    with region.batch.holding(key):
        if isinstance(body, Path):
            with body.open("rb") as fh:
                info = region.objects.put(key, fh, content_type=content_type)
        else:
            info = region.objects.put(key, body, content_type=content_type)
        replicated = region.uploads.acknowledge(key, info.version_id, None, since,
                                                body if isinstance(body, bytes) else None)
        crash_point("upload:replicated")
        started = region.batch.object_created(key)
    # The job id is derived from (key, version), so it is known even when another region runs it.
    job_id = job_id_for(key, info.version_id) if key.startswith(INPUT_PREFIX) else None
    return {"region": region.name, "key": key, "version_id": info.version_id, "etag": info.etag,
            "size": info.size, "job_id": job_id, "started_here": started is not None, "replication": replicated}


def _inline_bodies(body: UploadChanges, changes: list[Change]) -> dict[tuple[str, str], bytes]:
    """The bytes sent with a replica request, by (key, version id); each must be of an object put among
    its changes (the version the replicator then checks them against)."""
    puts = {(c.key, c.row.get("version_id")) for c in changes if c.table == OBJECTS_FEED and c.row is not None}
    found: dict[tuple[str, str], bytes] = {}
    for item in body.inline:
        if (item.key, item.version_id) not in puts:
            raise HTTPException(400, f"inline bytes of {item.key}@{item.version_id} name no object put sent")
        try:
            found[(item.key, item.version_id)] = base64.b64decode(item.data, validate=True)
        except binascii.Error as exc:
            raise HTTPException(400, f"inline bytes of {item.key} are not base64: {exc}") from None
    return found


def checked_key(key: str) -> str:
    try:
        return validate_key(key)
    except InvalidKey as exc:
        raise HTTPException(400, str(exc)) from None


def _stream(region: Region, key: str) -> StreamingResponse:
    info = region.objects.head(key)
    if info is None:
        raise HTTPException(404, f"no object at {key!r} in {region.name}")
    try:
        fh = region.objects.open(key)
    except ObjectNotFound:
        raise HTTPException(404, f"no object at {key!r} in {region.name}") from None

    def body() -> Iterator[bytes]:
        with fh:
            while block := fh.read(_STREAM_BLOCK):
                yield block

    return StreamingResponse(body(), media_type=info.content_type, headers=object_headers(info))


def router(region: Region, tokens: TokenCheck) -> APIRouter:
    r = APIRouter()
    api = [Depends(tokens.require_api)]

    @r.put(routes.OBJECTS, dependencies=api)
    async def put_object(key: str, request: Request) -> dict[str, Any]:
        key = checked_key(key)
        limit = region.config.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPException(413, f"the upload is {int(declared)} bytes; this region accepts at most {limit}")
        body = await receive_upload(request, region.upload_dir, limit)
        try:
            return await run_in_threadpool(store_upload, region, key, body,
                                           request.headers.get("content-type", "text/csv"))
        finally:
            if isinstance(body, Path):
                body.unlink(missing_ok=True)

    @r.get(routes.OBJECTS, dependencies=api)
    def get_object(key: str) -> StreamingResponse:
        return _stream(region, checked_key(key))

    @r.head(routes.OBJECTS, dependencies=api)
    def head_object(key: str) -> Response:
        info = region.objects.head(checked_key(key))
        if info is None:
            raise HTTPException(404, "no such object")
        return Response(headers=object_headers(info), media_type=info.content_type)

    @r.get(routes.PRESIGNED)
    def presigned(key: str, expires: str = "", sig: str = "") -> StreamingResponse:
        try:
            verify(key, expires, sig, bytes.fromhex(region.secrets.signing_key))
        except InvalidSignature as exc:
            raise HTTPException(403, str(exc)) from None
        return _stream(region, checked_key(key))

    @r.get(routes.INTERNAL_OBJECT, dependencies=[Depends(tokens.require_replication)])
    def internal_object(key: str) -> StreamingResponse:
        return _stream(region, checked_key(key))

    @r.post(routes.INTERNAL_ARRIVED, dependencies=[Depends(tokens.require_replication)])
    async def arrived(key: str) -> dict[str, Any]:
        return await run_in_threadpool(region.ingest.take_in, checked_key(key))

    @r.post(routes.INTERNAL_REPLICA, dependencies=[Depends(tokens.require_replication)])
    def replica(body: UploadChanges) -> dict[str, Any]:
        try:
            rep = region.replication.replicator(body.source)
        except KeyError:
            raise HTTPException(404, f"{region.name} does not replicate from {body.source!r}") from None
        try:
            changes = [Change(**c) for c in body.changes]
        except TypeError as exc:
            raise HTTPException(400, f"not a feed change: {exc}") from None
        inline = _inline_bodies(body, changes)
        try:
            applied = rep.apply_upload(changes, inline)
        except ReplicationPaused as exc:
            raise HTTPException(409, str(exc)) from None
        except SourceUnavailable as exc:
            raise HTTPException(502, str(exc)) from None
        return {"region": region.name, **applied}

    return r
