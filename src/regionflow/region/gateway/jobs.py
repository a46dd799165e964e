"""The batch workload's routes: jobs, chunks, rejects, notifications and reference tables."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from regionflow.api import routes
from regionflow.region.auth import TokenCheck
from regionflow.region.runtime import Region
from regionflow.state.base import ChunkStatus, JobRecord
from regionflow.storage.presign import presign_url
from regionflow.workloads.batch.reference import load_reference_table

LINK_SECONDS = 3600


def job_view(region: Region, job: JobRecord) -> dict[str, Any]:
    """A job with its chunk progress and a presigned link to its output."""
    chunks = region.state.list_chunks(job.job_id)
    view = asdict(job)
    view["chunks_done"] = sum(1 for c in chunks if c.status == ChunkStatus.DONE)
    view["chunks_total"] = job.chunks_total if job.chunks_total is not None else len(chunks)
    view["chunk_attempts"] = sum(c.attempts for c in chunks)
    view["link"] = (presign_url(region.config.access_point_url, job.output_key,
                                bytes.fromhex(region.secrets.signing_key), LINK_SECONDS)
                    if job.output_key else None)
    return view


def router(region: Region, tokens: TokenCheck) -> APIRouter:
    r = APIRouter(dependencies=[Depends(tokens.require_api)])

    def known(job_id: str) -> JobRecord:
        record = region.state.get_job(job_id)
        if record is None:
            raise HTTPException(404, f"no job {job_id} in {region.name}")
        return record

    @r.get(routes.JOBS)
    def jobs(status: str | None = None, limit: int = Query(200, ge=1, le=10000),
             prefix: str | None = Query(None, description="Only jobs whose input key starts with this.")
             ) -> dict[str, Any]:
        return {"region": region.name,
                "jobs": [asdict(j) for j in region.state.list_jobs(status, limit, input_prefix=prefix)]}

    @r.get(routes.JOB)
    def job(job_id: str) -> dict[str, Any]:
        return {"region": region.name, **job_view(region, known(job_id))}

    @r.get(routes.JOB_CHUNKS)
    def chunks(job_id: str) -> dict[str, Any]:
        return {"region": region.name, "job_id": job_id,
                "chunks": [asdict(c) for c in region.state.list_chunks(job_id)]}

    @r.get(routes.JOB_REJECTS)
    def rejects(job_id: str, limit: int = Query(1000, ge=1, le=100000),
                offset: int = Query(0, ge=0)) -> dict[str, Any]:
        known(job_id)
        rows = region.state.list_rejects(job_id, limit=limit, offset=offset)
        return {"region": region.name, "job_id": job_id, "total": region.state.count_rejects(job_id),
                "rejects": [asdict(r) for r in rows]}

    @r.get(routes.OUTBOX)
    def outbox() -> dict[str, Any]:
        return {"region": region.name, "notifications": [asdict(n) for n in region.state.list_notifications()]}

    @r.put(routes.REFERENCE)
    async def reference(table: str, request: Request, key: str = "uuid") -> dict[str, Any]:
        data = await request.body()
        loaded = load_reference_table(region.state, table, data, key)
        return {"region": region.name, "table": table, "rows": loaded.info.rows, "revision": loaded.info.revision,
                "duplicates": loaded.duplicates, "blank_keys": loaded.blank_keys}

    return r
