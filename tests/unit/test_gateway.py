"""A region's gateway in-process (httpx.ASGITransport): routes, auth, error mapping, fault admin.

The region is real (embedded stores, routing control) but its background loops are not started.
"""

from __future__ import annotations

import asyncio
import json
import re

import httpx
from prometheus_client.parser import text_string_to_metric_families

from regionflow.api import routes
from regionflow.api.wire import auth_header, info_from_headers
from regionflow.config import init_project, load_config
from regionflow.ids import job_id_for
from regionflow.region.gateway import create_app
from regionflow.region.runtime import Region

EAST = "us-east-1"


def _call(region: Region, method: str, path: str, token: str | None = "api", **kwargs) -> httpx.Response:
    headers = {}
    if token is not None:
        tokens = {"api": region.secrets.api_token, "admin": region.secrets.admin_token,
                  "replication": region.secrets.replication_token}
        headers = auth_header(tokens.get(token, token))

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(region))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return await client.request(method, path, headers=headers, **kwargs)

    return asyncio.run(go())


def test_health_needs_no_token_but_the_api_does(region):
    assert _call(region, "GET", routes.HEALTH, token=None).json()["region"] == EAST
    assert _call(region, "GET", routes.JOBS, token=None).status_code == 401
    assert _call(region, "GET", routes.JOBS).json() == {"region": EAST, "jobs": []}
    assert _call(region, "GET", routes.HEALTH_DEEP, token=None).json()["status"] == "ok"


def test_an_upload_creates_its_job_and_the_object_reads_back_with_its_metadata(region):
    put = _call(region, "PUT", routes.object_path("input/a.csv"), content=b"x,y\n1,2\n")
    assert put.status_code == 200
    body = put.json()
    assert body["job_id"] == job_id_for("input/a.csv", body["version_id"]) and body["started_here"] is True
    assert region.batch.busy()  # queued for the job runner
    job = _call(region, "GET", routes.job_path(body["job_id"])).json()
    assert job["status"] == "INITIALIZED" and job["owner_region"] == EAST and job["link"] is None
    got = _call(region, "GET", routes.object_path("input/a.csv"))
    assert got.content == b"x,y\n1,2\n"
    info = info_from_headers("input/a.csv", _call(region, "HEAD", routes.object_path("input/a.csv")).headers)
    assert (info.version_id, info.etag, info.size) == (body["version_id"], body["etag"], 8)
    # the put is in the change feed other regions pull (with the replication token)
    feed = _call(region, "GET", routes.FEED, token="replication", params={"since": 0, "kind": "objects"}).json()
    assert [c["key"] for c in feed["changes"]] == ["input/a.csv"]


def test_bad_keys_and_unknown_objects_are_refused_and_write_nothing(region):
    assert _call(region, "PUT", "/objects/input/%2e%2e/escape.csv", content=b"x").status_code == 400
    assert _call(region, "GET", routes.object_path("input/none.csv")).status_code == 404
    assert _call(region, "GET", routes.job_path("job-nope")).status_code == 404
    assert list(region.objects.list("")) == []


def test_switching_the_routing_control_needs_the_admin_token_and_the_current_epoch(region):
    epoch = _call(region, "GET", routes.CONTROL).json()["epoch"]
    body = {"region": "us-west-2", "epoch": epoch}
    assert _call(region, "POST", routes.CONTROL_ACTIVE, json=body).status_code == 403
    moved = _call(region, "POST", routes.CONTROL_ACTIVE, token="admin", json=body)
    assert moved.json()["active_region"] == "us-west-2" and moved.json()["epoch"] == epoch + 1
    stale = _call(region, "POST", routes.CONTROL_ACTIVE, token="admin", json=body)
    assert stale.status_code == 409  # StaleEpoch: the compare-and-set lost
    assert _call(region, "POST", routes.CONTROL_ACTIVE, token="admin",
                 json={"region": "mars-1", "epoch": epoch + 1}).status_code == 400


def test_an_injected_storage_fault_fails_deep_health_and_uploads_until_cleared(region):
    fault = _call(region, "POST", routes.FAULTS, token="admin",
                  json={"kind": "storage_unreachable", "duration": 30}).json()
    deep = _call(region, "GET", routes.HEALTH_DEEP, token=None)
    assert deep.status_code == 503 and deep.json()["checks"]["objects"].startswith("error:")
    refused = _call(region, "PUT", routes.object_path("input/b.csv"), content=b"x\n")
    assert refused.status_code == 503 and "storage unreachable" in refused.json()["detail"]
    cleared = _call(region, "DELETE", routes.FAULTS, token="admin").json()["cleared"]
    assert [f["id"] for f in cleared] == [fault["id"]]
    assert _call(region, "PUT", routes.object_path("input/b.csv"), content=b"x\n").status_code == 200


def test_replication_can_be_paused_per_kind_and_status_reads_the_flags_now(region):
    paused = _call(region, "POST", routes.replication_action_path("us-west-2", "pause"), token="admin",
                   params={"kind": "state"}).json()
    assert paused["paused_kinds"] == ["state"]
    [direction] = _call(region, "GET", routes.REPLICATION).json()["directions"]
    assert direction["source"] == "us-west-2" and direction["paused_kinds"] == ["state"]
    assert _call(region, "POST", routes.replication_action_path("nowhere", "pause"), token="admin").status_code == 404
    resumed = _call(region, "POST", routes.replication_action_path("us-west-2", "resume"), token="admin").json()
    assert resumed["paused"] is False


def test_a_plan_must_run_in_the_region_it_activates(region):
    resp = _call(region, "POST", routes.PLANS_RUN, token="admin",
                 json={"plan_path": region.config.plan_path, "activate": "us-west-2"})
    assert resp.status_code == 400 and "send it to us-west-2" in resp.json()["detail"]
    assert _call(region, "GET", routes.EXECUTIONS).json()["executions"] == []


def test_a_fresh_region_exposes_every_labelled_series_at_zero(region):
    # Prometheus knows a labelled series only once it exists: a region that has run nothing (a standby)
    # must still expose each of them, at 0, for dashboards and rate().
    text = _call(region, "GET", routes.METRICS).text
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}

    def value(name: str, **labels: str) -> float:
        assert (name, frozenset(labels.items())) in samples, f"no series {name}{labels}"
        return samples[(name, frozenset(labels.items()))]

    zero = [("regionflow_orchestrator_executions_total", "status", ("started", "succeeded", "failed", "interrupted")),
            ("regionflow_chunk_executions_total", "status", ("started", "succeeded", "failed")),
            ("regionflow_rows_total", "outcome", ("ok", "rejected")),
            ("regionflow_notifications_total", "status", ("sent", "duplicate")),
            ("regionflow_plan_executions_total", "status", ("succeeded", "failed")),
            ("regionflow_canary_total", "status", ("succeeded", "failed"))]
    for name, label, values in zero:
        for v in values:
            assert value(name, **{label: v}) == 0, (name, v)
    for kind in ("objects", "state"):
        for gauge in ("regionflow_replication_backlog", "regionflow_replication_lag_seconds"):
            assert value(gauge, source="us-west-2", target=EAST, kind=kind) == 0
    assert value("regionflow_active", region=EAST) == 1 and value("regionflow_active", region="us-west-2") == 0
    # every route's latency series, before any request reached it
    assert value("regionflow_request_seconds_count", method="PUT", route=routes.OBJECTS) == 0
    assert value("regionflow_request_seconds_count", method="POST", route=routes.PLANS_RUN) == 0


def test_requests_are_timed_by_method_and_route_template(region):
    def count(method: str, route: str) -> float:
        text = _call(region, "GET", routes.METRICS).text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "regionflow_request_seconds_count" and s.labels == {"method": method, "route": route}:
                    return s.value
        return 0.0

    before = {r: count(*r) for r in (("GET", routes.JOBS), ("GET", routes.OBJECTS), ("GET", "unmatched"))}
    assert _call(region, "GET", routes.JOBS).status_code == 200
    assert _call(region, "GET", routes.JOBS).status_code == 200
    assert _call(region, "GET", routes.object_path("input/absent.csv")).status_code == 404
    assert _call(region, "GET", "/no/such/route").status_code == 404
    assert count("GET", routes.JOBS) == before[("GET", routes.JOBS)] + 2
    assert count("GET", routes.OBJECTS) == before[("GET", routes.OBJECTS)] + 1  # the template, not the key
    assert count("GET", "unmatched") == before[("GET", "unmatched")] + 1


def _touch_plan(path, marker) -> str:
    """A plan whose us-east-1 workflow runs a shell command (what makes running any file dangerous)."""
    path.write_text(f"name: touch\nregions: [us-east-1, us-west-2]\nworkflows:\n  us-east-1:\n"
                    f"    - kind: custom\n      command: touch {marker}\n")
    return str(path)


def test_plans_run_only_from_the_plans_directory(region, tmp_path):
    plans = tmp_path / "plans"  # the default plans_dir, next to regionflow.toml
    assert region.config.plans_dir == str(plans)
    marker = tmp_path / "ran"
    outside = _touch_plan(tmp_path / "outside.yaml", marker)
    (plans / "link.yaml").symlink_to(outside)
    for path in (outside, f"{plans}/../outside.yaml", str(plans / "link.yaml")):
        resp = _call(region, "POST", routes.PLANS_RUN, token="admin",
                     json={"plan_path": path, "activate": EAST, "wait": True})
        assert resp.status_code == 400, (path, resp.text)
        assert f"plans run only from the plans directory {plans}" in resp.json()["detail"], path
    assert not marker.exists() and _call(region, "GET", routes.EXECUTIONS).json()["executions"] == []

    inside = _touch_plan(plans / "touch.yaml", marker)
    ran = _call(region, "POST", routes.PLANS_RUN, token="admin",
                json={"plan_path": inside, "activate": EAST, "wait": True})
    assert ran.status_code == 200 and ran.json()["status"] == "SUCCEEDED" and marker.exists()


def test_the_configured_plan_runs_wherever_it_is(tmp_path):
    marker = tmp_path / "ran"
    elsewhere = tmp_path / "ops"
    elsewhere.mkdir()
    configured = _touch_plan(elsewhere / "failover.yaml", marker)
    toml = init_project(tmp_path / "project")
    toml.write_text(f"plan = {json.dumps(configured)}\n" + toml.read_text())
    r = Region(load_config(toml), EAST)
    try:
        ran = _call(r, "POST", routes.PLANS_RUN, token="admin",
                    json={"plan_path": configured, "activate": EAST, "wait": True})
        assert ran.status_code == 200 and marker.exists()
    finally:
        r.stop()


def _internal_routes(region: Region) -> list[tuple[str, str]]:
    """(method, path with every parameter filled in) of each region-to-region route the gateway serves,
    read from its OpenAPI schema (so a route added later is found too)."""
    found = []
    for path, operations in create_app(region).openapi()["paths"].items():
        if path.startswith(routes.INTERNAL_PREFIX):
            concrete = re.sub(r"\{[^}]+\}", "a", path)  # one segment fits any path parameter
            found += [(m.upper(), concrete) for m in sorted(operations) if m != "head"]
    return found


def test_region_to_region_routes_refuse_the_api_token_and_take_the_replication_token(region):
    assert _call(region, "PUT", routes.object_path("input/a.csv"), content=b"x,y\n1,2\n").status_code == 200
    internal = _internal_routes(region)
    # every route under /internal/ is covered, including any added later (e.g. a catch-up call)
    assert {("GET", routes.FEED), ("GET", routes.FEED_STATS),
            ("GET", routes.internal_object_path("a"))} <= set(internal)
    for method, path in internal:
        refused = _call(region, method, path)  # the API token
        assert refused.status_code == 403, (method, path, refused.status_code)
        assert "needs the replication token" in refused.json()["detail"]
        assert _call(region, method, path, token=None).status_code == 401, (method, path)
        assert _call(region, method, path, token="not-a-token-at-all").status_code == 401, (method, path)
    feed = _call(region, "GET", routes.FEED, token="replication", params={"since": 0, "kind": "objects"})
    assert feed.status_code == 200 and [c["key"] for c in feed.json()["changes"]] == ["input/a.csv"]
    stats = _call(region, "GET", routes.FEED_STATS, token="replication")
    assert stats.status_code == 200 and stats.json()["head"] == feed.json()["head"]
    raw = _call(region, "GET", routes.internal_object_path("input/a.csv"), token="replication")
    assert raw.status_code == 200 and raw.content == b"x,y\n1,2\n"
    # the admin token may read them too (debugging replication with a peer's view)
    assert _call(region, "GET", routes.FEED_STATS, token="admin").status_code == 200


def test_the_replication_token_opens_nothing_but_the_region_to_region_routes(region):
    for method, path in (("GET", routes.JOBS), ("PUT", routes.reference_path("financial_data")),
                         ("PUT", routes.object_path("input/b.csv")), ("GET", routes.object_path("input/b.csv")),
                         ("GET", routes.METRICS), ("GET", routes.REPLICATION)):
        resp = _call(region, method, path, token="replication", content=b"uuid\nx\n" if method == "PUT" else None)
        assert resp.status_code == 403 and "region-to-region" in resp.json()["detail"], (method, path)
    body = {"region": "us-west-2", "epoch": 1}
    assert _call(region, "POST", routes.CONTROL_ACTIVE, token="replication", json=body).status_code == 403
    assert _call(region, "GET", routes.FAULTS, token="replication").status_code == 403
    assert region.objects.head("input/b.csv") is None
