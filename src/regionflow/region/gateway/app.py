"""The gateway app: error mapping, request timing, and the routers of every area."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from regionflow.chaos.faults import FaultInjected
from regionflow.errors import ControlUnavailable, RegionflowError, StaleEpoch, StoreUnavailable
from regionflow.region.auth import TokenCheck
from regionflow.region.gateway import faults as faults_routes
from regionflow.region.gateway import health as health_routes
from regionflow.region.gateway import jobs as jobs_routes
from regionflow.region.gateway import ledger as ledger_routes
from regionflow.region.gateway import ledger_ui as ledger_ui_routes
from regionflow.region.gateway import objects as objects_routes
from regionflow.region.gateway import replication as replication_routes
from regionflow.region.gateway import switch as switch_routes
from regionflow.region.gateway import triggers as triggers_routes
from regionflow.region.runtime import Region


def create_app(region: Region) -> FastAPI:
    app = FastAPI(title=f"regionflow gateway ({region.name})", version="0.1.0")
    tokens = TokenCheck.from_secrets(region.secrets)

    @app.exception_handler(RegionflowError)
    def _regionflow_error(_request: Request, exc: RegionflowError) -> JSONResponse:
        unavailable = isinstance(exc, FaultInjected | ControlUnavailable | StoreUnavailable)
        status = 409 if isinstance(exc, StaleEpoch) else 503 if unavailable else 400
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.middleware("http")
    async def _timing(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        region.metrics.requests.labels(request.method, getattr(route, "path", "unmatched")).observe(
            time.perf_counter() - started)
        return response

    served: list[tuple[str, str]] = []
    areas = [health_routes, objects_routes, jobs_routes, replication_routes, switch_routes, triggers_routes,
             faults_routes]
    if region.ledger is not None:
        areas += [ledger_routes, ledger_ui_routes]
    for area in areas:
        area_router = area.router(region, tokens)
        served += [(method, route.path) for route in area_router.routes if isinstance(route, APIRoute)
                   for method in sorted(route.methods or ())]
        app.include_router(area_router)
    # Every route's latency series from the start; "unmatched" is left to appear when it happens.
    region.metrics.expect_routes(served)
    return app
