"""Health (shallow and deep) and Prometheus metrics."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from regionflow.api import routes
from regionflow.errors import RegionflowError
from regionflow.region.auth import TokenCheck
from regionflow.region.runtime import Region


def router(region: Region, tokens: TokenCheck) -> APIRouter:
    r = APIRouter()

    @r.get(routes.HEALTH)
    def health() -> dict[str, Any]:
        try:
            epoch_seen: int | None = region.control.get().epoch
        except RegionflowError:
            epoch_seen = None
        canary = region.canary_last
        return {"region": region.name, "status": "ok", "uptime": round(time.time() - region.started_at, 1),
                "epoch_seen": epoch_seen, "busy": region.batch.busy(),
                "canary": None if canary is None else {"ok": canary.ok, "at": canary.at}}

    @r.get(routes.HEALTH_DEEP)
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
        # The executor is shown, not checked: a cluster both regions share being down is no reason to fail
        # over, and the region's jobs wait for it as they wait out a storage outage.
        return JSONResponse({"region": region.name, "status": "ok" if ok else "failing", "checks": checks,
                             "faults": region.faults.active(), "executor": region.executor.status().to_dict()},
                            status_code=200 if ok else 503)

    @r.get(routes.METRICS, dependencies=[Depends(tokens.require_api)])
    def metrics() -> Response:
        region.refresh_gauges()
        return Response(generate_latest(region.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return r
