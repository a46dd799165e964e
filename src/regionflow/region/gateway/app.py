"""The gateway app: error mapping, request timing, and the routers of every area."""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

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


class RequestTiming:
    """Times every HTTP request, by method and route, until its response is sent.

    Plain ASGI: a function middleware (BaseHTTPMiddleware) runs each request in an extra task and passes the
    response through a memory stream block by block, which under load cost the gateway more than the
    requests themselves (the objects a standby fetches are streamed)."""

    def __init__(self, app: ASGIApp, observe: Callable[[str, str, float], None]):
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            # The router records the matched route in the request's scope.
            route = scope.get("route")
            self.observe(scope["method"], getattr(route, "path", "unmatched"), time.perf_counter() - started)


def create_app(region: Region) -> FastAPI:
    app = FastAPI(title=f"regionflow gateway ({region.name})", version="0.1.0")
    tokens = TokenCheck.from_secrets(region.secrets)

    @app.exception_handler(RegionflowError)
    def _regionflow_error(_request: Request, exc: RegionflowError) -> JSONResponse:
        unavailable = isinstance(exc, FaultInjected | ControlUnavailable | StoreUnavailable)
        status = 409 if isinstance(exc, StaleEpoch) else 503 if unavailable else 400
        return JSONResponse({"detail": str(exc)}, status_code=status)

    def observe(method: str, path: str, seconds: float) -> None:
        region.metrics.requests.labels(method, path).observe(seconds)

    app.add_middleware(RequestTiming, observe=observe)

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
