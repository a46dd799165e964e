"""Routing control, replication status and pause/resume, and the internal feed other regions pull."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel

from regionflow.api import routes
from regionflow.region.auth import TokenCheck
from regionflow.region.runtime import Region
from regionflow.replication.replicator import KINDS


class SetActive(BaseModel):
    region: str
    epoch: int


def router(region: Region, tokens: TokenCheck) -> APIRouter:
    r = APIRouter()
    api = [Depends(tokens.require_api)]
    admin = [Depends(tokens.require_admin)]
    internal = [Depends(tokens.require_replication)]  # region-to-region only

    @r.get(routes.CONTROL, dependencies=api)
    def control() -> dict[str, Any]:
        return asdict(region.control.get(fresh=True))

    @r.post(routes.CONTROL_ACTIVE, dependencies=admin)
    def set_active(body: SetActive) -> dict[str, Any]:
        if body.region not in region.config.region_names:
            raise HTTPException(400, f"unknown region {body.region!r}")
        return asdict(region.control.set_active(body.region, body.epoch, by=f"api@{region.name}"))

    @r.get(routes.REPLICATION, dependencies=api)
    def replication() -> dict[str, Any]:
        return {"region": region.name, "directions": region.replication_status(), "uploads": region.uploads.status()}

    @r.post(routes.REPLICATION_ACTION, dependencies=admin)
    def replication_control(source: str, action: str, kind: str = "all") -> dict[str, Any]:
        if source not in region.replication.sources():
            raise HTTPException(404, f"{region.name} does not replicate from {source!r}")
        if action not in ("pause", "resume"):
            raise HTTPException(400, "action must be pause or resume")
        if kind not in ("all", *KINDS):
            raise HTTPException(400, "kind must be all, objects or state")
        region.replication.set_paused(source, action == "pause", KINDS if kind == "all" else (kind,))
        rep = region.replication.replicator(source)
        rep.run_once()
        return rep.status.as_dict()

    @r.get(routes.INTERNAL_APPLIED, dependencies=internal)
    def applied(source: str) -> dict[str, Any]:
        # what a region whose uploads fell back to async asks, to know when to wait for this one again
        if source not in region.replication.sources():
            raise HTTPException(404, f"{region.name} does not replicate from {source!r}")
        return next(d.as_dict() for d in region.replication.status() if d.source == source)

    @r.get(routes.FEED, dependencies=internal)
    def feed(since: int = Query(0, ge=0), limit: int = Query(500, ge=1, le=5000),
             kind: str | None = Query(None, pattern="^(objects|state)$")) -> Response:
        # The head is read first: every change up to it is visible to the query that follows (the feed
        # becomes visible in sequence order), so a short answer means "nothing more of this kind up to head".
        head = region.state.feed_head()
        changes = region.state.feed_page_json(since, limit, kind)
        return Response(f'{{"head":{head},"changes":{changes}}}', media_type="application/json")

    @r.get(routes.FEED_STATS, dependencies=internal)
    def feed_stats(since: int = Query(0, ge=0)) -> dict[str, Any]:
        return region.state.feed_stats(since)

    return r
