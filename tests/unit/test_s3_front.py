"""The access point's S3 pass-through decisions that come before any store: which requests are S3 ones,
and the S3-style answers when it cannot pass one through."""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from regionflow.region.s3_front import S3Front, S3PassThrough, is_s3_request

SIGV4 = ("AWS4-HMAC-SHA256 Credential=AK/20261202/us-east-1/s3/aws4_request, SignedHeaders=host, "
         "Signature=abc")


def _scope(headers: dict[str, str], query: str = "") -> dict:
    return {"type": "http", "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            "query_string": query.encode()}


def test_s3_requests_are_told_apart_from_the_api() -> None:
    assert is_s3_request(_scope({"authorization": SIGV4}))
    assert is_s3_request(_scope({}, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a&X-Amz-Signature=b"))
    assert not is_s3_request(_scope({"authorization": "Bearer token"}))
    assert not is_s3_request(_scope({}, "expires=1&sig=abc"))  # regionflow's own presigned links


def _call(front: S3Front, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    async def api(_request):
        return PlainTextResponse("the api")

    app = S3PassThrough(Starlette(routes=[Route("/{path:path}", api, methods=["GET", "PUT"])]), front)

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ap") as client:
            return await client.request(method, path, headers=headers)

    return asyncio.run(go())


def _front(endpoints, healthy: list[str]) -> S3Front:
    async def ordered() -> list[str]:
        return healthy

    return S3Front("batch", endpoints, {"us-east-1": "http://127.0.0.1:9"}, ordered, lambda name: None,
                   httpx.AsyncClient(), "token")


def test_embedded_topology_answers_s3_with_the_reason_and_the_api_is_untouched() -> None:
    front = _front("region us-east-1 keeps its objects in file://x, not on an S3 endpoint", ["us-east-1"])
    resp = _call(front, "PUT", "/batch/input/a.csv", {"authorization": SIGV4})
    assert resp.status_code == 501 and b"<Code>NotImplemented</Code>" in resp.content
    assert b"file://x" in resp.content
    assert _call(front, "GET", "/jobs", {"authorization": "Bearer t"}).text == "the api"


def test_other_buckets_and_no_healthy_region_get_s3_errors() -> None:
    front = _front({"us-east-1": "http://127.0.0.1:9"}, [])
    other = _call(front, "GET", "/other-bucket/k", {"authorization": SIGV4})
    assert other.status_code == 404 and b"<Code>NoSuchBucket</Code>" in other.content
    down = _call(front, "GET", "/batch/k", {"authorization": SIGV4})
    assert down.status_code == 503 and b"<Code>ServiceUnavailable</Code>" in down.content


def test_metadata_named_like_regionflows_own_is_refused_before_any_store() -> None:
    front = _front({"us-east-1": "http://127.0.0.1:9"}, ["us-east-1"])
    resp = _call(front, "PUT", "/batch/input/a.csv", {"authorization": SIGV4, "x-amz-meta-rf-sha256": "forged"})
    assert resp.status_code == 400 and b"<Code>InvalidArgument</Code>" in resp.content
    assert b"x-amz-meta-rf-sha256" in resp.content
