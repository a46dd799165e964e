"""The typed API client against a scripted server (httpx.MockTransport): auth header, paths, error
mapping, and the job wait built on poll_until."""

from __future__ import annotations

import io
import ssl

import httpx
import pytest

from regionflow.api.client import ApiClient, ApiError, shared_verify
from regionflow.polling import PollTimeout, poll_until


def _client(handler) -> ApiClient:
    return ApiClient("http://region", "tok", target="us-east-1", timeout=1, transport=httpx.MockTransport(handler))


def test_every_request_carries_the_token_and_paths_are_quoted():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"region": "us-east-1", "key": "input/a b.csv", "job_id": "job-1"})

    with _client(handler) as api:
        assert api.upload("input/a b.csv", b"x\n")["job_id"] == "job-1"
    assert seen[0].headers["authorization"] == "Bearer tok"
    assert seen[0].url.raw_path == b"/objects/input/a%20b.csv" and seen[0].method == "PUT"


def test_errors_carry_the_servers_detail_and_status():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"detail": "execution x is not waiting in us-east-1"})

    with _client(handler) as api, pytest.raises(ApiError) as caught:
        api.approve("x", "me")
    assert str(caught.value) == "us-east-1: HTTP 409: execution x is not waiting in us-east-1"
    assert caught.value.status_code == 409 and not caught.value.unreachable


def test_a_region_that_does_not_answer_is_unreachable_not_an_http_error():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with _client(handler) as api, pytest.raises(ApiError) as caught:
        api.health()
    assert caught.value.unreachable and "is not reachable: ConnectError" in str(caught.value)


def test_absent_things_are_none_where_absence_is_an_answer():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "no such thing"})

    with _client(handler) as api:
        assert api.job_or_none("job-1") is None and api.head_object("input/a.csv") is None
        sink = io.BytesIO()
        assert api.internal_object("input/a.csv", sink) is None and sink.getvalue() == b""
        with pytest.raises(ApiError, match="HTTP 404"):
            api.job("job-1")


def test_wait_jobs_returns_once_every_job_finished_and_names_the_stragglers_on_timeout():
    calls = {"job-a": 0, "job-b": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        job_id = request.url.path.rsplit("/", 1)[-1]
        calls[job_id] += 1
        if job_id == "job-a" and calls[job_id] < 3:
            return httpx.Response(404, json={"detail": "not replicated yet"})
        status = "COMPLETED" if job_id == "job-a" else "PROCESSING"
        return httpx.Response(200, json={"job_id": job_id, "status": status})

    with _client(handler) as api:
        assert [v["status"] for v in api.wait_jobs(["job-a"], timeout=5, poll=0.01)] == ["COMPLETED"]
        with pytest.raises(ApiError, match=r"waiting for 1 job\(s\): job-b"):
            api.wait_jobs(["job-a", "job-b"], timeout=0.1, poll=0.01)


def test_poll_until_returns_the_first_truthy_answer_or_times_out():
    answers = iter([None, 0, "ready"])
    assert poll_until(lambda: next(answers), timeout=5, interval=0.001) == "ready"
    with pytest.raises(PollTimeout, match="waiting for godot"):
        poll_until(lambda: None, timeout=0.05, interval=0.01, what="godot")


def test_clients_share_one_default_trust_and_keep_a_given_one():
    default = shared_verify(True)
    # made once per process (reading the CA bundle costs ~20 ms a client), and it verifies servers
    assert isinstance(default, ssl.SSLContext) and shared_verify(True) is default
    assert default.verify_mode == ssl.CERT_REQUIRED and default.check_hostname
    own = ssl.create_default_context()
    assert shared_verify(own) is own and shared_verify(False) is False
