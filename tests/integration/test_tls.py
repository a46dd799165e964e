"""A real two-region stack whose gateways and access point serve TLS with a certificate made by the test
(a private CA and a server certificate for 127.0.0.1), clients verifying it through tls_ca."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from regionflow.workloads.batch.sample import generate
from stackkit import EAST, WEST, Stack, running_stack
from tlskit import Certs, make_certs

pytestmark = pytest.mark.timeout(240)


def _with_tls(certs: Certs):
    def edit(text: str) -> str:
        # every listener (the access point's table, each [[regions]]) serves the same 127.0.0.1 certificate
        text = re.sub(r"(?m)^(port = \d+)$", f'\\1\ntls_cert = "{certs.cert}"\ntls_key = "{certs.key}"', text)
        return f'tls_ca = "{certs.ca}"\n' + text  # a top-level key: before the first table

    return edit


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path / "certs")


@pytest.fixture
def tls_stack(tmp_path: Path, certs: Certs) -> Iterator[Stack]:
    with running_stack(tmp_path / "stack", edit=_with_tls(certs)) as s:
        yield s


def test_a_stack_over_tls_serves_status_jobs_and_replication_and_refuses_plain_http(tls_stack: Stack, tmp_path):
    stack = tls_stack
    status = stack.rf_json("status")
    for name in (EAST, WEST):
        region = status["regions"][name]
        assert region["url"].startswith("https://127.0.0.1:") and region["healthy"] and region["deep"] == "ok"
    assert status["access_point"]["url"].startswith("https://") and status["access_point"]["healthy"]

    data = tmp_path / "data"
    generate(500, data, invalid_ratio=0.1, seed=5)
    stack.rf("reference", "load", str(data / "financial_data.csv"))
    job_id = stack.rf_json("submit", str(data / "orders.csv"))["job_id"]
    done = stack.rf_json("wait", job_id, "--timeout", "60")[0]
    assert done["status"] == "COMPLETED" and done["rows_in"] == done["rows_ok"] + done["rows_rejected"] == 500
    assert done["link"].startswith(stack.url())  # presigned links name the https:// access point

    # replication runs over TLS with the replication token: the standby gets the job and its output
    west = stack.eventually(lambda: (j := stack.job(job_id, WEST)) and j["status"] == "COMPLETED" and j,
                            timeout=20, what="the job to replicate over TLS")
    assert west["output_etag"] == done["output_etag"]
    with stack.http(WEST) as w:
        assert w.get(f"/objects/{done['output_key']}").status_code == 200
    assert all(d["reachable"] for d in stack.replication(WEST).values())

    # the console (in the access point) reads each region over TLS too
    with stack.http(token=None) as browser:
        assert browser.post("/console/login", data={"token": stack.secrets.admin_token}).status_code == 303
        overview = browser.get("/console/api/overview").json()
    assert overview["down"] == [] and {r["name"] for r in overview["regions"]} == {EAST, WEST}

    # a TLS port does not answer plain HTTP
    port = stack.config.region(EAST).port
    with pytest.raises(httpx.TransportError), httpx.Client(timeout=5) as plain:
        plain.get(f"http://127.0.0.1:{port}/health")
    with stack.http(EAST, token=None) as h:
        assert h.get("/health").status_code == 200  # and still serves TLS afterwards


def test_a_client_that_does_not_trust_the_ca_gets_one_clear_line(tls_stack: Stack, certs: Certs):
    stack = tls_stack
    toml = (stack.root / "regionflow.toml").read_text()
    # Beside the real file, so its relative paths (secrets, data) resolve the same way.
    (stack.root / "no-ca.toml").write_text(re.sub(r"(?m)^tls_ca = .*$", "", toml))
    (stack.root / "other-ca.toml").write_text(re.sub(r"(?m)^tls_ca = .*$", f'tls_ca = "{certs.other_ca}"', toml))
    for name in ("no-ca.toml", "other-ca.toml"):
        for args in (["jobs"], ["job", "job-nope", "--region", EAST]):
            result = stack.rf(*args, "--config", name, check=False)
            assert result.returncode == 1, (name, args, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
            assert "TLS certificate verification failed" in result.stderr, result.stderr
            assert "set tls_ca in regionflow.toml" in result.stderr
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"), httpx.Client(timeout=5) as h:
        h.get(f"{stack.url(EAST)}/health")  # the default trust store does not know the test CA
