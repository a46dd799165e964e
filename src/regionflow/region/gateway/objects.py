"""Objects: upload (the trigger of the batch workload), download, head, presigned links, and the
internal read other regions' replicators use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import StreamingResponse

from regionflow.api import routes
from regionflow.api.wire import object_headers
from regionflow.errors import InvalidKey, InvalidSignature, ObjectNotFound
from regionflow.ids import job_id_for
from regionflow.region.auth import TokenCheck
from regionflow.region.runtime import Region
from regionflow.storage.base import validate_key
from regionflow.storage.presign import verify
from regionflow.workloads.batch.orchestrator import INPUT_PREFIX

_STREAM_BLOCK = 1 << 20


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
        data = await request.body()
        info = region.objects.put(key, data, content_type=request.headers.get("content-type", "text/csv"))
        started = region.batch.object_created(key)
        # The job id is derived from (key, version), so it is known even when another region runs it.
        job_id = job_id_for(key, info.version_id) if key.startswith(INPUT_PREFIX) else None
        return {"region": region.name, "key": key, "version_id": info.version_id, "etag": info.etag,
                "size": info.size, "job_id": job_id, "started_here": started is not None}

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

    return r
