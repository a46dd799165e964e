"""The access point's S3 pass-through (like a multi-Region access point): S3 clients (AWS CLI, boto3, any
SDK) use the access point as their endpoint for one global bucket, and each request goes, unchanged, to
one region's S3 store, which checks its signature itself.

Nothing of S3 is re-implemented here. Each region's store holds a bucket of the global bucket's name and
takes the same credentials, and the request keeps its path, query, body and Host header, so the client's
SigV4 signature holds there; answers come back as the store gave them, streamed both ways.

Routing is the access point's: writes go to the active region if healthy, else to another; object reads to
a healthy region that holds the object (active first, a 404 or 5xx tries the next); listings to the active
region. The parts of a multipart upload follow its CreateMultipartUpload to the region that holds the
upload. After a store answers a PutObject, CopyObject, CompleteMultipartUpload or DeleteObject with
success, the region is told (POST /internal/arrived/KEY) and takes the object in as it takes a gateway
upload: into its change feed, to the other regions (in sync mode before the answer), then its job; the
answer carries ``x-regionflow-job-id``. A region that cannot confirm gets the client a 503, which S3
clients retry (on the other region when this one is down).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, quote, unquote
from xml.sax.saxutils import escape

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from regionflow.api import routes
from regionflow.api.wire import auth_header

log = logging.getLogger("regionflow.access_point")

# Bodies up to this size are held so that a failed forward can be retried on the next region.
BUFFER_BYTES = 16 << 20
# Not forwarded: hop-by-hop headers, and Expect (httpx sends the body at once; SigV4 does not sign it).
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection",
        "proxy-authorization", "expect"}
_RESERVED_META = "x-amz-meta-rf-"
_UPLOAD_ID = re.compile(rb"<UploadId>([^<]+)</UploadId>")
_DELETED_KEY = re.compile(r"<Deleted>\s*<Key>([^<]*)</Key>")
# A write's answer comes once the store has all of it (a CompleteMultipartUpload of a large object takes
# a while); a read that gets no byte for 5 s goes to the next region holding the object.
_S3_TIMEOUT = httpx.Timeout(30.0, connect=1.0, read=600.0)
_READ_TIMEOUT = httpx.Timeout(5.0, connect=1.0)


def is_s3_request(scope: Scope) -> bool:
    """Whether an HTTP request is an S3 one: SigV4 (or V2) in its Authorization header or its query (a
    presigned link). regionflow's own API uses bearer tokens, so the two never overlap."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            return value.startswith((b"AWS4-HMAC-SHA256 ", b"AWS "))
    query = scope.get("query_string", b"")
    return b"X-Amz-Signature=" in query or b"X-Amz-Credential=" in query or b"AWSAccessKeyId=" in query


def s3_error(status: int, code: str, message: str, resource: str = "") -> Response:
    """An S3-style XML error, as an S3 client expects to parse it."""
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(code)}</Code>'
            f"<Message>{escape(message)}</Message><Resource>{escape(resource)}</Resource></Error>")
    return Response(body, status_code=status, media_type="application/xml")


class S3PassThrough:
    """ASGI middleware: S3 requests go to handle(); everything else to the access point's own app."""

    def __init__(self, app: ASGIApp, front: S3Front):
        self.app = app
        self.front = front

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_s3_request(scope):
            response = await self.front.handle(Request(scope, receive))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class S3Front:
    def __init__(self, bucket: str, endpoints: dict[str, str] | str, region_urls: dict[str, str],
                 ordered_healthy: Callable[[], Awaitable[list[str]]], mark_down: Callable[[str], None],
                 notice_client: httpx.AsyncClient, token: str, notice_timeout: float = 60.0):
        self.bucket = bucket
        # A str: why the pass-through is off (every S3 request is answered 501 with it).
        self.endpoints = endpoints
        self.region_urls = region_urls
        self.ordered_healthy = ordered_healthy
        self.mark_down = mark_down
        self.notices = notice_client
        self.token = token
        # A region's answer to a notice can wait for the other region up to the sync bound.
        self.notice_timeout = httpx.Timeout(notice_timeout, connect=1.0)
        self.client = httpx.AsyncClient(timeout=_S3_TIMEOUT)
        # Only the client's own headers go to the store: an Accept-Encoding it did not send could have the
        # store compress an object's bytes on the way.
        self.client.headers = httpx.Headers()
        self._upload_regions: dict[str, str] = {}  # multipart upload id -> the region that holds it

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- the request ---------------------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        raw = request.scope.get("raw_path") or quote(request.url.path).encode()
        path = raw.decode("latin-1").split("?", 1)[0]
        bucket, _, key = path.lstrip("/").partition("/")
        bucket = unquote(bucket)
        key = unquote(key)
        if isinstance(self.endpoints, str):
            return s3_error(501, "NotImplemented", f"this access point does not pass S3 through: {self.endpoints}",
                            path)
        if bucket and bucket != self.bucket:
            return s3_error(404, "NoSuchBucket", f"this access point serves one bucket, {self.bucket!r}", path)
        query = dict(parse_qsl(request.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        method = request.method
        reserved = [k for k in request.headers if k.lower().startswith(_RESERVED_META)]
        if reserved and method in ("PUT", "POST"):
            return s3_error(400, "InvalidArgument", f"{reserved[0]}: metadata named rf-* is regionflow's own "
                            "(its sha256 and version of the object); choose another name", path)
        candidates = await self.ordered_healthy()
        if not candidates:
            return s3_error(503, "ServiceUnavailable", "no region is healthy: every region is down", path)
        if "uploadId" in query:
            pinned = self._upload_regions.get(query["uploadId"])
            order = [pinned] if pinned in candidates else candidates
            return await self._forward(request, order, key, query, upload_part=True)
        if method in ("GET", "HEAD") and key:
            return await self._read(request, candidates)
        return await self._forward(request, candidates, key, query)

    def _headers(self, request: Request) -> list[tuple[str, str]]:
        # The Host header stays the client's: its signature covers it.
        return [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP]

    async def _send(self, name: str, request: Request, body: bytes | AsyncIterator[bytes] | None,
                    *, stream: bool, timeout: httpx.Timeout = _S3_TIMEOUT) -> httpx.Response:
        endpoints = self.endpoints
        assert isinstance(endpoints, dict)
        raw = request.scope.get("raw_path") or quote(request.url.path).encode()
        target = endpoints[name] + raw.decode("latin-1")
        query = request.scope.get("query_string", b"").decode("latin-1")
        if query:
            target += "?" + query
        built = self.client.build_request(request.method, httpx.URL(target), headers=self._headers(request),
                                          content=body, timeout=timeout)
        try:
            return await self.client.send(built, stream=stream)
        except httpx.HTTPError:
            self.mark_down(name)
            raise

    async def _read(self, request: Request, candidates: list[str]) -> Response:
        """An object GET or HEAD: from the first region (active first) whose store has it."""
        last: Response | None = None
        for name in candidates:
            try:
                resp = await self._send(name, request, None, stream=True, timeout=_READ_TIMEOUT)
                if resp.status_code == 404 or resp.status_code >= 500:
                    last = _passed(resp, name, b"".join([block async for block in resp.aiter_raw()]))
                    await resp.aclose()
                    continue
            except httpx.HTTPError:
                continue
            return _streamed(resp, name)
        return last or s3_error(503, "ServiceUnavailable", "no region's store answered", request.url.path)

    async def _forward(self, request: Request, candidates: list[str], key: str, query: dict[str, str], *,
                       upload_part: bool = False) -> Response:
        """A write or listing: to the first region that answers. A body small enough to hold is retried on
        the next region when a store cannot be reached (and, for a multipart request whose upload was not
        pinned, when the store does not know the upload); a larger one is streamed to the first."""
        size, chunked = request.headers.get("content-length", ""), bool(request.headers.get("transfer-encoding"))
        body: bytes | AsyncIterator[bytes] | None = None
        if chunked or (size.isdigit() and int(size) > BUFFER_BYTES):
            body = request.stream()
        elif size.isdigit() and int(size) > 0:
            body = await request.body()
        buffered = not isinstance(body, AsyncIterator)
        last: Response | None = None
        for name in candidates if buffered else candidates[:1]:
            try:
                resp = await self._send(name, request, body, stream=True)
                content = b"".join([block async for block in resp.aiter_raw()])
                await resp.aclose()
            except httpx.HTTPError as exc:
                self.mark_down(name)
                log.warning("S3 %s to %s failed (%s)", request.method, name, type(exc).__name__)
                continue
            if upload_part and resp.status_code == 404 and b"NoSuchUpload" in content:
                last = _passed(resp, name, content)
                continue
            return await self._answered(request, resp, content, name, key, query)
        if last is not None:
            return last
        return s3_error(503, "ServiceUnavailable", "the request could not be delivered to any region's store; "
                        "send it again", request.url.path)

    # -- after a store answered --------------------------------------------------------------------
    async def _answered(self, request: Request, resp: httpx.Response, content: bytes, name: str, key: str,
                        query: dict[str, str]) -> Response:
        method, ok = request.method, 200 <= resp.status_code < 300
        if method == "POST" and "uploads" in query and ok:
            found = _UPLOAD_ID.search(content)
            if found:
                self._upload_regions[found.group(1).decode()] = name
        changed: list[str] = []
        if ok and key and b"<Error>" not in content[:512]:
            if (method == "PUT" and "uploadId" not in query) or (method == "POST" and "uploadId" in query):
                changed = [key]  # PutObject, CopyObject, CompleteMultipartUpload
                self._upload_regions.pop(query.get("uploadId", ""), None)
            elif method == "DELETE" and "uploadId" not in query:
                changed = [key]
        elif ok and not key and method == "POST" and "delete" in query:
            changed = [unquote(k) for k in _DELETED_KEY.findall(content.decode("utf-8", "replace"))]
        answer = _passed(resp, name, content)
        for changed_key in changed:
            taken = await self._notice(name, changed_key)
            if taken is None:
                return s3_error(503, "ServiceUnavailable",
                                f"{name} stored the change to {changed_key!r} but could not confirm it was recorded "
                                "and replicated; send the request again", request.url.path)
            if taken.get("job_id") and len(changed) == 1:
                answer.headers["x-regionflow-job-id"] = taken["job_id"]
        return answer

    async def _notice(self, name: str, key: str) -> dict[str, Any] | None:
        """Tell the region its store changed at key; its answer (job id, replication) or None."""
        url = self.region_urls[name] + routes.internal_arrived_path(key)
        try:
            resp = await self.notices.post(url, headers=auth_header(self.token), timeout=self.notice_timeout)
        except httpx.HTTPError as exc:
            log.warning("%s did not take in %s: %s", name, key, type(exc).__name__)
            return None
        if resp.status_code != 200:
            log.warning("%s did not take in %s: HTTP %d %s", name, key, resp.status_code, resp.text[:200])
            return None
        return resp.json()


def _headers_of(resp: httpx.Response, name: str) -> list[tuple[bytes, bytes]]:
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.multi_items()
               if k.lower() not in _HOP]
    headers.append((b"x-regionflow-region", name.encode()))
    return headers


def _passed(resp: httpx.Response, name: str, content: bytes) -> Response:
    """A store's answer, read whole, passed on as it came (its own Content-Length included: a HEAD's names
    the object's size)."""
    out = Response(content, status_code=resp.status_code)
    out.raw_headers = _headers_of(resp, name)
    return out


def _streamed(resp: httpx.Response, name: str) -> StreamingResponse:
    """A store's answer whose body passes through as it arrives (objects may be larger than memory)."""
    out = StreamingResponse(resp.aiter_raw(), status_code=resp.status_code, background=BackgroundTask(resp.aclose))
    out.raw_headers = _headers_of(resp, name)
    return out
