"""The global access point: one address in front of every region (the multi-region access point).

Uploads go to a healthy region, the active one first; downloads go to a healthy region that holds the
object; every other API call goes to the active region if it is healthy, else to another healthy one.
A region counts as healthy when its /health answered within HEALTH_TIMEOUT, checked at most every
HEALTH_TTL seconds, so a stopped (SIGSTOP) or dead region is skipped within about a second; a request
it then fails marks it down at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import sys
import time
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from regionflow.api import routes
from regionflow.config import Config, load_config, load_secrets, s3_endpoints
from regionflow.console import mount_console
from regionflow.control import CachedControl, open_control
from regionflow.errors import RegionflowError
from regionflow.ids import job_id_for
from regionflow.region.logs import configure
from regionflow.region.s3_front import S3Front, S3PassThrough

log = logging.getLogger("regionflow.access_point")

HEALTH_TTL = 0.25
HEALTH_TIMEOUT = 0.5
FORWARD_TIMEOUT = httpx.Timeout(30.0, connect=1.0)
# A read (download) that gets no byte for this long goes to the next region holding the object.
READ_TIMEOUT = httpx.Timeout(5.0, connect=1.0)
# Uploads up to this size are held in memory so a failed forward can be retried on the next region.
UPLOAD_BUFFER_BYTES = 16 << 20
# A large upload's answer comes once the region has stored (hashed, synced, replicated) all of it.
STREAMED_UPLOAD_TIMEOUT = httpx.Timeout(30.0, connect=1.0, read=600.0)
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length"}


def _refuse_cookies(client: httpx.AsyncClient) -> None:
    """Make client's cookie jar accept none (every domain refused). The policy is set on the client's own jar:
    httpx copies a jar given to its constructor into a new one, without the policy."""
    from http.cookiejar import DefaultCookiePolicy

    client.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))


class Regions:
    def __init__(self, config: Config):
        self.config = config
        self.urls = {r.name: config.region_url(r.name) for r in config.regions}
        self.control = CachedControl(open_control(config.control), ttl=HEALTH_TTL)
        # One client forwards every caller's requests: it must keep no cookies, or a Set-Cookie meant for one
        # caller (a ledger UI sign-in) would ride along on everybody else's requests.
        self.client = httpx.AsyncClient(timeout=FORWARD_TIMEOUT, verify=config.tls_verify())
        _refuse_cookies(self.client)
        self._health: dict[str, tuple[float, bool]] = {}

    async def healthy(self, name: str) -> bool:
        checked = self._health.get(name)
        if checked and time.monotonic() - checked[0] < HEALTH_TTL:
            return checked[1]
        try:
            resp = await self.client.get(f"{self.urls[name]}{routes.HEALTH}", timeout=HEALTH_TIMEOUT)
            ok = resp.status_code == 200
        except httpx.HTTPError:
            ok = False
        self._health[name] = (time.monotonic(), ok)
        return ok

    def mark_down(self, name: str) -> None:
        self._health[name] = (time.monotonic(), False)

    def active(self) -> str | None:
        try:
            return self.control.get().active_region
        except RegionflowError:
            return None

    async def ordered_healthy(self) -> list[str]:
        """Healthy regions, the active one first."""
        active = self.active()
        names = sorted(self.urls, key=lambda n: (n != active, n))
        checks = await asyncio.gather(*(self.healthy(n) for n in names))
        return [n for n, ok in zip(names, checks, strict=True) if ok]

    async def status(self) -> dict:
        active = self.active()
        return {"active": active, "regions": {n: {"url": u, "healthy": await self.healthy(n)}
                                              for n, u in self.urls.items()}}


def _forward_headers(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}


def _response(resp: httpx.Response, region: str) -> Response:
    headers = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP_HEADERS | {"content-encoding"}}
    headers["x-regionflow-region"] = region
    return Response(resp.content, status_code=resp.status_code, headers=headers)


def _streamed(resp: httpx.Response, region: str) -> StreamingResponse:
    """Pass an object's body through as it arrives (objects may be larger than memory)."""
    skip = _HOP_HEADERS - {"content-length"}  # the bytes pass through unchanged, so their length holds
    headers = {k: v for k, v in resp.headers.items() if k.lower() not in skip}
    headers["x-regionflow-region"] = region
    return StreamingResponse(resp.aiter_raw(), status_code=resp.status_code, headers=headers,
                             background=BackgroundTask(resp.aclose))


def _buffered_upload(request: Request) -> bool:
    """Whether an upload is small enough to hold in memory, so that it can be retried on the next region
    when the first fails; larger (or unsized) uploads are streamed to one region."""
    size = request.headers.get("content-length", "")
    return size.isdigit() and int(size) <= UPLOAD_BUFFER_BYTES


def create_app(config: Config) -> FastAPI:
    regions = Regions(config)
    closers = [regions.client.aclose]

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        for close in closers:
            await close()

    app = FastAPI(title="regionflow access point", version="0.1.0", lifespan=lifespan)

    @app.get(routes.HEALTH)
    async def health() -> dict:
        return {"status": "ok", **(await regions.status())}

    secrets = load_secrets(config)
    # The console's routes come before the catch-all below, which would otherwise forward them.
    closers.append(mount_console(app, config, secrets).aclose)
    try:
        endpoints: dict[str, str] | str = s3_endpoints(config)
    except RegionflowError as exc:
        endpoints = str(exc)
    front = S3Front(config.access_point.bucket, endpoints, regions.urls, regions.ordered_healthy, regions.mark_down,
                    regions.client, secrets.replication_token,
                    notice_timeout=config.replication.sync_timeout + 30.0)
    closers.append(front.aclose)
    app.add_middleware(S3PassThrough, front=front)

    async def _send(name: str, request: Request, body: bytes | AsyncIterator[bytes] | None,
                    stream: bool = False, timeout: httpx.Timeout | None = None) -> httpx.Response:
        raw = request.scope.get("raw_path")
        path = raw.decode("latin-1") if raw else quote(request.url.path, safe="/")
        url = f"{regions.urls[name]}{path}"
        timeout = timeout or (READ_TIMEOUT if request.method in ("GET", "HEAD") else FORWARD_TIMEOUT)
        headers = _forward_headers(request)
        if not isinstance(body, bytes | None) and "content-length" in request.headers:
            headers["content-length"] = request.headers["content-length"]  # a streamed body keeps its size
        try:
            sent = regions.client.build_request(request.method, url, params=request.query_params, headers=headers,
                                                content=body, timeout=timeout)
            return await regions.client.send(sent, stream=stream)
        except httpx.HTTPError:
            regions.mark_down(name)
            raise

    def _unavailable(why: str) -> JSONResponse:
        return JSONResponse({"detail": f"no healthy region can serve this request: {why}"}, status_code=503)

    async def _first_holder(request: Request) -> Response:
        """GET of an object: the first healthy region (active first) that has it."""
        last: Response | None = None
        for name in await regions.ordered_healthy():
            try:
                resp = await _send(name, request, None, stream=True)
            except httpx.HTTPError:
                continue
            if resp.status_code == 404 or resp.status_code >= 500:
                # not there, or that region cannot serve it now (its storage failing): another may have it
                await resp.aread()
                last = _response(resp, name)
                continue
            if request.method == "HEAD" or resp.status_code >= 400:
                await resp.aread()
                return _response(resp, name)
            return _streamed(resp, name)
        return last if last is not None else _unavailable("no region answered")

    @app.api_route(routes.PRESIGNED, methods=["GET", "HEAD"])
    async def presigned(key: str, request: Request) -> Response:
        return await _first_holder(request)

    @app.api_route(routes.OBJECTS, methods=["GET", "HEAD", "PUT"])
    async def objects(key: str, request: Request) -> Response:
        if request.method != "PUT":
            return await _first_holder(request)
        candidates = await regions.ordered_healthy()
        if not _buffered_upload(request):
            if not candidates:
                return _unavailable("every region is down")
            try:
                resp = await _send(candidates[0], request, request.stream(), timeout=STREAMED_UPLOAD_TIMEOUT)
                return _response(resp, candidates[0])
            except httpx.HTTPError as exc:
                return _unavailable(f"the upload to {candidates[0]} was interrupted ({type(exc).__name__}); "
                                    "send it again")
        body = await request.body()
        for i, name in enumerate(candidates):
            try:
                if i > 0 and (stored := await _already_stored(name, key, request, body)) is not None:
                    return stored
                return _response(await _send(name, request, body), name)
            except httpx.HTTPError as exc:
                log.warning("upload to %s failed (%s); trying the next region", name, exc)
        return _unavailable("every region is down")

    async def _already_stored(name: str, key: str, request: Request, body: bytes) -> JSONResponse | None:
        """The answer for an upload the previous region stored (and, in sync mode, replicated here) before
        it failed to answer: sending it again would make a second version, and a second job, of one file."""
        headers = {k: v for k, v in _forward_headers(request).items() if k.lower() != "content-type"}
        resp = await regions.client.head(f"{regions.urls[name]}{routes.object_path(key)}", headers=headers,
                                         timeout=READ_TIMEOUT)
        if resp.status_code != 200 or resp.headers.get("x-etag") != hashlib.sha256(body).hexdigest():
            return None
        version = resp.headers["x-version-id"]
        job_id = job_id_for(key, version) if key.startswith("input/") else None
        return JSONResponse({"region": name, "key": key, "version_id": version, "etag": resp.headers["x-etag"],
                             "size": len(body), "job_id": job_id,
                             "started_here": False, "replication": {"mode": "found after a failed forward"}},
                            headers={"x-regionflow-region": name})

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def api(path: str, request: Request) -> Response:
        body = await request.body()
        for name in await regions.ordered_healthy():
            try:
                return _response(await _send(name, request, body), name)
            except httpx.HTTPError:
                continue
        return _unavailable("every region is down")

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="regionflow-access-point")
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    configure("access-point")
    try:
        config = load_config(args.config)
        cert, key = config.access_point.server_tls()
        app = create_app(config)  # reads the secrets file too
    except RegionflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ap = config.access_point
    # The answers passed through carry the region's (or S3 store's) own Date and Server headers.
    uvicorn.run(app, host=ap.host, port=ap.port, log_level="warning", access_log=False, server_header=False,
                date_header=False, ssl_certfile=cert, ssl_keyfile=key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
