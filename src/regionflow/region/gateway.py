"""A region's HTTP gateway (FastAPI): objects, jobs, rejects, reference data, health, metrics,
replication status and control, routing control, and the internal feed that other regions pull."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from regionflow.chaos.faults import FaultInjected
from regionflow.errors import (
    ControlUnavailable,
    InvalidKey,
    InvalidSignature,
    ObjectNotFound,
    RegionflowError,
    StaleEpoch,
)
from regionflow.region.auth import TokenCheck
from regionflow.region.runtime import Region
from regionflow.state.base import JobRecord
from regionflow.storage.base import ObjectInfo, validate_key
from regionflow.storage.presign import presign_url, verify
from regionflow.workloads.batch.reference import load_reference_table

_STREAM_BLOCK = 1 << 20


class SetActive(BaseModel):
    region: str
    epoch: int


class RunPlan(BaseModel):
    plan_path: str
    activate: str
    practice: bool = False
    started_by: str = "api"
    wait: bool = False


class InjectFault(BaseModel):
    kind: str
    duration: float = 60.0
    params: dict[str, Any] = {}


class Approve(BaseModel):
    by: str = "api"


def _checked_key(key: str) -> str:
    try:
        return validate_key(key)
    except InvalidKey as exc:
        raise HTTPException(400, str(exc)) from None


def object_headers(info: ObjectInfo) -> dict[str, str]:
    return {"x-etag": info.etag, "x-version-id": info.version_id, "etag": f'"{info.etag}"',
            "x-metadata": json.dumps(info.metadata), "x-last-modified": repr(info.last_modified),
            "content-length": str(info.size)}


def _stream(region: Region, key: str) -> StreamingResponse:
    info = region.objects.head(key)
    if info is None:
        raise HTTPException(404, f"no object at {key!r} in {region.name}")
    try:
        fh = region.objects.open(key)
    except ObjectNotFound:
        raise HTTPException(404, f"no object at {key!r} in {region.name}") from None

    def body():
        with fh:
            while block := fh.read(_STREAM_BLOCK):
                yield block

    return StreamingResponse(body(), media_type=info.content_type, headers=object_headers(info))


def job_view(region: Region, job: JobRecord) -> dict[str, Any]:
    chunks = region.state.list_chunks(job.job_id)
    view = asdict(job)
    view["chunks_done"] = sum(1 for c in chunks if c.status == "DONE")
    view["chunks_total"] = job.chunks_total if job.chunks_total is not None else len(chunks)
    view["chunk_attempts"] = sum(c.attempts for c in chunks)
    view["link"] = (presign_url(region.config.access_point_url, job.output_key,
                                bytes.fromhex(region.secrets.signing_key), 3600)
                    if job.output_key else None)
    return view


def create_app(region: Region) -> FastAPI:
    app = FastAPI(title=f"regionflow gateway ({region.name})", version="0.1.0")
    tokens = TokenCheck(region.secrets.api_token, region.secrets.admin_token)
    api = [Depends(tokens.require_api)]
    admin = [Depends(tokens.require_admin)]

    @app.exception_handler(RegionflowError)
    def _regionflow_error(_request: Request, exc: RegionflowError) -> JSONResponse:
        unavailable = isinstance(exc, FaultInjected | ControlUnavailable)
        status = 409 if isinstance(exc, StaleEpoch) else 503 if unavailable else 400
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.middleware("http")
    async def _timing(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        region.metrics.requests.labels(request.method, getattr(route, "path", "unmatched")).observe(
            time.perf_counter() - started)
        return response

    # -- health and metrics ------------------------------------------------------------------------
    @app.get("/health")
    def health() -> dict:
        try:
            epoch_seen: int | None = region.control.get().epoch
        except RegionflowError:
            epoch_seen = None
        return {"region": region.name, "status": "ok", "uptime": round(time.time() - region.started_at, 1),
                "epoch_seen": epoch_seen, "busy": region.busy()}

    @app.get("/health/deep")
    def health_deep() -> JSONResponse:
        checks: dict[str, str] = {}
        for name, probe in (("objects", lambda: next(iter(region.plain_objects.list("health/")), None)),
                            ("state", region.state.feed_head),
                            ("control", lambda: region.control.get(fresh=True))):
            try:
                probe()
                checks[name] = "ok"
            except Exception as exc:  # a deep health check reports, never raises
                checks[name] = f"error: {type(exc).__name__}: {exc}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"region": region.name, "status": "ok" if ok else "failing", "checks": checks,
                             "faults": region.faults.active()}, status_code=200 if ok else 503)

    @app.get("/metrics", dependencies=api)
    def metrics() -> Response:
        region.replication_status()  # refresh the replication gauges
        region.is_active()
        return Response(generate_latest(region.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- objects -----------------------------------------------------------------------------------
    @app.put("/objects/{key:path}", dependencies=api)
    async def put_object(key: str, request: Request) -> dict:
        key = _checked_key(key)
        data = await request.body()
        info = region.objects.put(key, data, content_type=request.headers.get("content-type", "text/csv"))
        started = region.object_created(key)
        # The job id is derived from (key, version), so it is known even when another region runs it.
        return {"region": region.name, "key": key, "version_id": info.version_id, "etag": info.etag,
                "size": info.size, "job_id": _expected_job(key, info), "started_here": started is not None}

    @app.get("/objects/{key:path}", dependencies=api)
    def get_object(key: str) -> StreamingResponse:
        return _stream(region, _checked_key(key))

    @app.head("/objects/{key:path}", dependencies=api)
    def head_object(key: str) -> Response:
        info = region.objects.head(_checked_key(key))
        if info is None:
            raise HTTPException(404, "no such object")
        return Response(headers=object_headers(info), media_type=info.content_type)

    @app.get("/o/{key:path}")
    def presigned(key: str, expires: str = "", sig: str = "") -> StreamingResponse:
        try:
            verify(key, expires, sig, bytes.fromhex(region.secrets.signing_key))
        except InvalidSignature as exc:
            raise HTTPException(403, str(exc)) from None
        return _stream(region, _checked_key(key))

    # -- jobs --------------------------------------------------------------------------------------
    @app.get("/jobs", dependencies=api)
    def jobs(status: str | None = None, limit: int = Query(200, ge=1, le=10000)) -> dict:
        return {"region": region.name, "jobs": [asdict(j) for j in region.state.list_jobs(status, limit)]}

    @app.get("/jobs/{job_id}", dependencies=api)
    def job(job_id: str) -> dict:
        record = region.state.get_job(job_id)
        if record is None:
            raise HTTPException(404, f"no job {job_id} in {region.name}")
        return {"region": region.name, **job_view(region, record)}

    @app.get("/jobs/{job_id}/chunks", dependencies=api)
    def chunks(job_id: str) -> dict:
        return {"region": region.name, "job_id": job_id,
                "chunks": [asdict(c) for c in region.state.list_chunks(job_id)]}

    @app.get("/jobs/{job_id}/rejects", dependencies=api)
    def rejects(job_id: str, limit: int = Query(1000, ge=1, le=100000), offset: int = Query(0, ge=0)) -> dict:
        if region.state.get_job(job_id) is None:
            raise HTTPException(404, f"no job {job_id} in {region.name}")
        rows = region.state.list_rejects(job_id, limit=limit, offset=offset)
        return {"region": region.name, "job_id": job_id, "total": region.state.count_rejects(job_id),
                "rejects": [asdict(r) for r in rows]}

    @app.get("/outbox", dependencies=api)
    def outbox() -> dict:
        return {"region": region.name, "notifications": [asdict(n) for n in region.state.list_notifications()]}

    # -- reference data ----------------------------------------------------------------------------
    @app.put("/reference/{table}", dependencies=api)
    async def reference(table: str, request: Request, key: str = "uuid") -> dict:
        data = await request.body()
        loaded = load_reference_table(region.state, table, data, key)
        return {"region": region.name, "table": table, "rows": loaded.info.rows, "revision": loaded.info.revision,
                "duplicates": loaded.duplicates, "blank_keys": loaded.blank_keys}

    # -- routing control ---------------------------------------------------------------------------
    @app.get("/control", dependencies=api)
    def control() -> dict:
        return asdict(region.control.get(fresh=True))

    @app.post("/control/active", dependencies=admin)
    def set_active(body: SetActive) -> dict:
        if body.region not in {r.name for r in region.config.regions}:
            raise HTTPException(400, f"unknown region {body.region!r}")
        return asdict(region.control.set_active(body.region, body.epoch, by=f"api@{region.name}"))

    # -- replication -------------------------------------------------------------------------------
    @app.get("/replication", dependencies=api)
    def replication() -> dict:
        return {"region": region.name, "directions": region.replication_status()}

    @app.post("/replication/{source}/{action}", dependencies=admin)
    def replication_control(source: str, action: str, kind: str = "all") -> dict:
        if source not in region.replicators:
            raise HTTPException(404, f"{region.name} does not replicate from {source!r}")
        if action not in ("pause", "resume"):
            raise HTTPException(400, "action must be pause or resume")
        if kind not in ("all", "objects", "state"):
            raise HTTPException(400, "kind must be all, objects or state")
        rep = region.replicators[source]
        for k in ("objects", "state") if kind == "all" else (kind,):
            region.state.set_paused(rep.cursor(k), action == "pause")
        rep.run_once()
        return rep.status.as_dict()

    # -- internal: what other regions pull ---------------------------------------------------------
    @app.get("/internal/feed", dependencies=api)
    def feed(since: int = Query(0, ge=0), limit: int = Query(500, ge=1, le=5000),
             kind: str | None = Query(None, pattern="^(objects|state)$")) -> dict:
        # The head is read first: every change up to it is visible to the query that follows (the feed
        # becomes visible in sequence order), so a short answer means "nothing more of this kind up to head".
        head = region.state.feed_head()
        return {"head": head, "changes": [asdict(c) for c in region.state.feed_since(since, limit, kind)]}

    @app.get("/internal/feed/stats", dependencies=api)
    def feed_stats(since: int = Query(0, ge=0)) -> dict:
        return region.state.feed_stats(since)

    @app.get("/internal/objects/{key:path}", dependencies=api)
    def internal_object(key: str) -> StreamingResponse:
        return _stream(region, _checked_key(key))

    # -- region switch -----------------------------------------------------------------------------
    @app.post("/plans/run", dependencies=admin)
    def run_plan(body: RunPlan) -> dict:
        from regionflow.switch.plan import load_plan, plan_regions_known

        if body.activate != region.name:
            raise HTTPException(400, f"a plan runs in the region it activates: send it to {body.activate}, "
                                     f"not {region.name}")
        plan = load_plan(body.plan_path)
        plan_regions_known(plan, [r.name for r in region.config.regions])
        plan.workflow(body.activate)
        try:
            return region.switch.start(plan, body.activate, practice=body.practice, started_by=body.started_by,
                                       wait=body.wait)
        except RuntimeError as exc:
            raise HTTPException(409, str(exc)) from None

    @app.get("/plans/executions", dependencies=api)
    def executions(limit: int = Query(100, ge=1, le=1000)) -> dict:
        return {"region": region.name, "executions": region.state.list_executions(limit)}

    @app.get("/plans/executions/{execution_id}", dependencies=api)
    def execution(execution_id: str) -> dict:
        record = region.state.get_execution(execution_id)
        if record is None:
            raise HTTPException(404, f"no execution {execution_id} in {region.name}")
        return record

    @app.post("/plans/executions/{execution_id}/approve", dependencies=admin)
    def approve(execution_id: str, body: Approve) -> dict:
        if not region.switch.approve(execution_id, body.by):
            raise HTTPException(409, f"execution {execution_id} is not waiting in {region.name}")
        return {"execution_id": execution_id, "approved_by": body.by}

    @app.get("/plans/evaluation", dependencies=api)
    def evaluation() -> dict:
        return region.plan_evaluation or {"status": "not evaluated yet"}

    # -- admin: fault injection ---------------------------------------------------------------------
    @app.get("/admin/faults", dependencies=admin)
    def faults() -> dict:
        return {"region": region.name, "faults": region.faults.active()}

    @app.post("/admin/faults", dependencies=admin, status_code=201)
    def inject(body: InjectFault) -> dict:
        return region.inject_fault(body.kind, body.duration, body.params)

    @app.delete("/admin/faults", dependencies=admin)
    def clear(fault_id: str | None = None) -> dict:
        return {"region": region.name, "cleared": region.clear_faults(fault_id)}

    return app


def _expected_job(key: str, info: ObjectInfo) -> str | None:
    from regionflow.ids import job_id_for
    from regionflow.workloads.batch.orchestrator import INPUT_PREFIX

    return job_id_for(key, info.version_id) if key.startswith(INPUT_PREFIX) else None
