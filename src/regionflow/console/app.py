"""The operator console at the access point's /console: per-region panels, jobs, plan executions (with
Approve for one waiting at a manual_approval step) and failover/failback, each with typed confirmation.

Login takes the admin token once; the browser then holds only a random session id (HttpOnly,
SameSite=Strict cookie), kept in memory, so restarting the access point logs everyone out. Every
/console/api/* route needs that session. The console reads each region itself, server-side with the API
token, in parallel and with a short timeout: a region that does not answer is reported as down, so the
console keeps working while a region is stopped. Switching regions posts the configured plan to the
region being activated, and approving posts to the region running the execution, with the admin token.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import secrets as _secrets
import time
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from prometheus_client.parser import text_string_to_metric_families

from regionflow.api import routes
from regionflow.api.client import AsyncApiClient
from regionflow.config import Config, Secrets
from regionflow.state.base import JobStatus
from regionflow.switch.records import ExecutionStatus, merge_executions
from regionflow.workloads.batch.metrics import CHUNK_STATUSES, JobRun, NotifyOutcome, RowOutcome

COOKIE = "rf_console"
SESSION_TTL = 12 * 3600.0
MAX_SESSIONS = 1000
FETCH_TIMEOUT = httpx.Timeout(1.0)
SWITCH_TIMEOUT = httpx.Timeout(15.0, connect=1.0)
REJECTS_SHOWN = 200
# Jobs whose chunks are all done (no progress to show).
_OUTPUT_DONE = (JobStatus.NOTIFIED, JobStatus.COMPLETED)
_STATIC = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
_HTML_HEADERS = {"content-security-policy": _CSP, "x-frame-options": "DENY", "cache-control": "no-store",
                 "referrer-policy": "same-origin"}

# Console name -> (Prometheus sample name, labels). A labelled counter never incremented reads as 0.
METRICS: dict[str, tuple[str, dict[str, str]]] = {
    "files_split": ("regionflow_files_split_total", {}),
    "files_processed": ("regionflow_files_processed_total", {}),
    "files_reconciled": ("regionflow_files_reconciled_total", {}),
    "files_skipped": ("regionflow_files_skipped_total", {}),
    **{f"orchestrator_{s}": ("regionflow_orchestrator_executions_total", {"status": s})
       for s in (JobRun.STARTED, JobRun.SUCCEEDED, JobRun.FAILED)},
    **{f"chunk_{s}": ("regionflow_chunk_executions_total", {"status": s}) for s in CHUNK_STATUSES},
    "rows_ok": ("regionflow_rows_total", {"outcome": RowOutcome.OK}),
    "rows_rejected": ("regionflow_rows_total", {"outcome": RowOutcome.REJECTED}),
    **{f"plan_executions_{s.lower()}": ("regionflow_plan_executions_total", {"status": s.lower()})
       for s in (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED)},
    "notifications_sent": ("regionflow_notifications_total", {"status": NotifyOutcome.SENT}),
    "epoch": ("regionflow_epoch", {}),
    # The ledger workload (zero where there is none).
    "ledger_transfers": ("regionflow_ledger_transfers_total", {"outcome": "created"}),
    "ledger_replay_lag_seconds": ("regionflow_ledger_replay_lag_seconds", {}),
    "ledger_canary_succeeded": ("regionflow_ledger_canary_total", {"status": "succeeded"}),
    "ledger_canary_failed": ("regionflow_ledger_canary_total", {"status": "failed"}),
    "ledger_commit_seconds_sum": ("regionflow_ledger_commit_seconds_sum", {}),
    "ledger_commit_seconds_count": ("regionflow_ledger_commit_seconds_count", {}),
}


def parse_metrics(text: str) -> dict[str, float]:
    """The console's metric values (METRICS keys) from a region's Prometheus text."""
    index: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            index[(sample.name, frozenset(sample.labels.items()))] = sample.value
    values = {key: index.get((name, frozenset(labels.items())), 0.0) for key, (name, labels) in METRICS.items()}
    count = values["ledger_commit_seconds_count"]
    values["ledger_commit_ms_avg"] = round(1000 * values["ledger_commit_seconds_sum"] / count, 2) if count else 0.0
    return values


def _json_or_none(resp: httpx.Response | None) -> Any:
    if resp is None:
        return None
    try:
        return resp.json()
    except ValueError:
        return None


class Sessions:
    """Console sessions in memory: random id -> expiry time."""

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}

    def new(self) -> str:
        """A new session id, valid for SESSION_TTL."""
        now = time.time()
        self._expiry = {s: t for s, t in self._expiry.items() if t > now}
        while len(self._expiry) >= MAX_SESSIONS:
            self._expiry.pop(min(self._expiry, key=self._expiry.__getitem__))
        sid = _secrets.token_urlsafe(32)
        self._expiry[sid] = now + SESSION_TTL
        return sid

    def valid(self, sid: str | None) -> bool:
        """True if sid is a live session."""
        return sid is not None and self._expiry.get(sid, 0.0) > time.time()

    def drop(self, sid: str | None) -> None:
        """End a session (no-op if unknown)."""
        if sid:
            self._expiry.pop(sid, None)


class Console:
    """What the console routes read from the regions, each region asked directly and in parallel."""

    def __init__(self, config: Config, secrets: Secrets):
        self.config = config
        self.secrets = secrets
        self.urls = {r.name: config.region_url(r.name) for r in config.regions}
        self.client = AsyncApiClient(secrets.api_token, timeout=FETCH_TIMEOUT, verify=config.tls_verify())
        self.sessions = Sessions()
        self.last_active = config.primary

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()

    async def get(self, region: str, path: str, **params: Any) -> httpx.Response | None:
        """GET a region's API with the API token; None if it did not answer in time."""
        return await self.client.get(self.urls[region], path, **params)

    def ordered(self) -> list[str]:
        """Region names, the last known active region first."""
        return sorted(self.urls, key=lambda n: (n != self.last_active, n))

    async def region(self, name: str) -> dict[str, Any]:
        """One region's health, deep status, routing control, metrics and replication, or down."""
        paths = (routes.HEALTH, routes.HEALTH_DEEP, routes.CONTROL, routes.METRICS, routes.REPLICATION)
        health, deep, control, metrics, replication = await asyncio.gather(*(self.get(name, p) for p in paths))
        up = health is not None and health.status_code == 200
        view: dict[str, Any] = {"name": name, "url": self.urls[name], "up": up, "status": "up" if up else "down",
                                "deep": None, "control": None, "metrics": None, "replication": []}
        if not up:
            view["error"] = (f"no answer within {FETCH_TIMEOUT.read:g}s" if health is None
                             else f"/health answered {health.status_code}")
            return view
        view["deep"] = _json_or_none(deep) or {"status": "unknown", "checks": {}}
        if control is not None and control.status_code == 200:
            view["control"] = _json_or_none(control)
        if metrics is not None and metrics.status_code == 200:
            try:
                view["metrics"] = parse_metrics(metrics.text)
            except ValueError:
                view["metrics"] = None
        if replication is not None and replication.status_code == 200:
            report = _json_or_none(replication) or {}
            view["replication"] = report.get("directions", [])
            view["uploads"] = report.get("uploads")
        return view

    async def overview(self) -> dict[str, Any]:
        """Every region's view; the active region and epoch are those of the newest routing control seen."""
        regions = await asyncio.gather(*(self.region(n) for n in self.urls))
        controls = [r["control"] for r in regions if r["control"]]
        newest = max(controls, key=lambda c: c.get("epoch", 0), default=None)
        active = newest.get("active_region") if newest else None
        if active:
            self.last_active = active
        for r in regions:
            r["active"] = r["name"] == active
        return {"time": time.time(), "primary": self.config.primary, "active": active,
                "epoch": newest.get("epoch") if newest else None, "plan_path": self.config.plan_path,
                "regions": regions, "down": [r["name"] for r in regions if not r["up"]]}

    async def first(self, path: str, **params: Any) -> tuple[str, httpx.Response] | None:
        """The first answer other than 404 from the regions, active first (the last 404 if all say so)."""
        last: tuple[str, httpx.Response] | None = None
        for name in self.ordered():
            resp = await self.get(name, path, **params)
            if resp is None:
                continue
            last = (name, resp)
            if resp.status_code != 404:
                return last
        return last

    async def jobs(self) -> dict[str, Any] | None:
        """Jobs from the first region that answers, with chunk progress for unfinished ones."""
        got = await self.first(routes.JOBS, limit=200)
        if got is None or got[1].status_code != 200:
            return None
        region, resp = got
        jobs = resp.json().get("jobs", [])
        unfinished = [j for j in jobs if j.get("status") not in _OUTPUT_DONE][:25]
        views = await asyncio.gather(*(self.get(region, routes.job_path(j["job_id"])) for j in unfinished))
        progress = {v.json()["job_id"]: v.json().get("chunks_done") for v in views if v and v.status_code == 200}
        for j in jobs:
            done = j.get("status") in _OUTPUT_DONE
            j["chunks_done"] = j.get("chunks_total") if done else progress.get(j["job_id"])
        return {"region": region, "jobs": jobs}

    async def job(self, job_id: str) -> tuple[int, dict[str, Any]]:
        """A job with its chunks and first rejects, from the first region that holds it."""
        got = await self.first(routes.job_path(job_id))
        if got is None:
            return 503, {"detail": "no region answered"}
        region, resp = got
        if resp.status_code != 200:
            return resp.status_code, _json_or_none(resp) or {"detail": resp.text}
        chunks, rejects = await asyncio.gather(self.get(region, routes.job_chunks_path(job_id)),
                                               self.get(region, routes.job_rejects_path(job_id),
                                                        limit=REJECTS_SHOWN))
        return 200, {"region": region, "job": resp.json(),
                     "chunks": (_json_or_none(chunks) or {}).get("chunks", []),
                     "rejects": _json_or_none(rejects) or {"total": None, "rejects": []}}

    async def executions(self) -> dict[str, Any]:
        """Plan executions of every region that answers, newest first; a record from the region that ran it
        wins over a replicated copy."""
        answers = await asyncio.gather(*(self.get(n, routes.EXECUTIONS, limit=50) for n in self.urls))
        found: dict[str, list[dict[str, Any]]] = {}
        down = []
        for name, resp in zip(self.urls, answers, strict=True):
            if resp is None or resp.status_code != 200:
                down.append(name)
            else:
                found[name] = resp.json().get("executions", [])
        records = merge_executions(found)
        return {"executions": records, "down": down}

    async def switch(self, target: str) -> tuple[int, dict[str, Any]]:
        """Run the configured plan in target (the region it activates) with the admin token."""
        body = {"plan_path": self.config.plan_path, "activate": target, "practice": False, "started_by": "console"}
        try:
            resp = await self.client.post(self.urls[target], routes.PLANS_RUN, json=body,
                                          token=self.secrets.admin_token, timeout=SWITCH_TIMEOUT)
        except httpx.HTTPError as exc:
            return 503, {"detail": f"{target} did not answer ({type(exc).__name__}); nothing was started"}
        return resp.status_code, _json_or_none(resp) or {"detail": resp.text}

    async def approve(self, region: str, execution_id: str, confirm: object) -> tuple[int, dict[str, Any]]:
        """Approve the execution waiting in region, once confirm is its target region's name."""
        resp = await self.get(region, routes.execution_path(execution_id))
        if resp is None:
            return 503, {"detail": f"{region} did not answer; nothing was approved"}
        record = _json_or_none(resp) or {}
        if resp.status_code != 200:
            return resp.status_code, record or {"detail": resp.text}
        if record.get("status") != ExecutionStatus.WAITING_APPROVAL:
            return 409, {"detail": f"execution {execution_id} is {record.get('status')}, not waiting for approval"}
        target = record.get("target")
        if confirm != target:
            return 400, {"detail": f"type the target region's name ({target}) to confirm"}
        try:
            answer = await self.client.post(self.urls[region], routes.execution_approve_path(execution_id),
                                            json={"by": "console"}, token=self.secrets.admin_token,
                                            timeout=SWITCH_TIMEOUT)
        except httpx.HTTPError as exc:
            return 503, {"detail": f"{region} did not answer ({type(exc).__name__}); nothing was approved"}
        return answer.status_code, _json_or_none(answer) or {"detail": answer.text}


def _static_dir() -> Path:
    return Path(str(resources.files("regionflow.console").joinpath("static")))


def _plotly_js() -> Path | None:
    """plotly.min.js inside the installed plotly package (served as is, never copied)."""
    try:
        path = Path(str(resources.files("plotly").joinpath("package_data/plotly.min.js")))
    except ModuleNotFoundError:
        return None
    return path if path.is_file() else None


def login_page(message: str = "") -> str:
    """The login form (message shown above it, escaped)."""
    note = f'<p class="error" data-testid="login-error">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>regionflow console - log in</title>
<link rel="stylesheet" href="/console/static/console.css"></head>
<body class="login"><main class="login-box"><h1>regionflow console</h1>{note}
<form id="login-form" data-testid="login-form" method="post" action="/console/login">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" data-testid="login-token" required>
<button type="submit" data-testid="login-submit">Log in</button></form>
<p class="hint">The admin token is <code>admin_token</code> in the project's secrets file.</p></main></body></html>
"""


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host", "")


def mount_console(app: FastAPI, config: Config, secrets: Secrets) -> Console:
    """Add the console routes to the access point app (call before its catch-all route); returns the
    Console, whose aclose() the app's lifespan should await."""
    console = Console(config, secrets)
    static = _static_dir()
    admin = secrets.admin_token.encode()

    def logged_in(request: Request) -> bool:
        return console.sessions.valid(request.cookies.get(COOKIE))

    def refused() -> JSONResponse:
        return JSONResponse({"detail": "log in to the console first"}, status_code=401)

    @app.get("/console", include_in_schema=False)
    async def page(request: Request) -> Response:
        if not logged_in(request):
            return HTMLResponse(login_page(), headers=_HTML_HEADERS)
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"), headers=_HTML_HEADERS)

    @app.post("/console/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        if not (_same_origin(request) and token and hmac.compare_digest(token.encode(), admin)):
            return HTMLResponse(login_page("That is not the admin token."), status_code=401, headers=_HTML_HEADERS)
        resp = RedirectResponse("/console", status_code=303)
        resp.set_cookie(COOKIE, console.sessions.new(), max_age=int(SESSION_TTL), path="/console", httponly=True,
                        samesite="strict", secure=config.access_point.tls)  # never sent over plain HTTP
        return resp

    @app.post("/console/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        console.sessions.drop(request.cookies.get(COOKIE))
        resp = RedirectResponse("/console", status_code=303)
        resp.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
        return resp

    @app.get("/console/static/vendor/plotly.min.js", include_in_schema=False)
    async def plotly_js() -> Response:
        path = _plotly_js()
        if path is None:
            return JSONResponse({"detail": "the plotly package is not installed"}, status_code=404)
        return FileResponse(path, media_type="text/javascript", headers={"cache-control": "max-age=86400"})

    @app.get("/console/static/{name}", include_in_schema=False)
    async def static_file(name: str) -> Response:
        if name not in _STATIC:
            return JSONResponse({"detail": "not found"}, status_code=404)
        return FileResponse(static / name, media_type=_STATIC[name], headers={"cache-control": "no-cache"})

    @app.get("/console/api/overview", include_in_schema=False)
    async def overview(request: Request) -> JSONResponse:
        return JSONResponse(await console.overview()) if logged_in(request) else refused()

    @app.get("/console/api/jobs", include_in_schema=False)
    async def jobs(request: Request) -> JSONResponse:
        if not logged_in(request):
            return refused()
        found = await console.jobs()
        return JSONResponse(found) if found else JSONResponse({"detail": "no region answered"}, status_code=503)

    @app.get("/console/api/jobs/{job_id}", include_in_schema=False)
    async def job(job_id: str, request: Request) -> JSONResponse:
        if not logged_in(request):
            return refused()
        status, body = await console.job(job_id)
        return JSONResponse(body, status_code=status)

    @app.get("/console/api/executions", include_in_schema=False)
    async def executions(request: Request) -> JSONResponse:
        return JSONResponse(await console.executions()) if logged_in(request) else refused()

    @app.get("/console/api/executions/{execution_id}", include_in_schema=False)
    async def execution(execution_id: str, request: Request, region: str = "") -> JSONResponse:
        if not logged_in(request):
            return refused()
        if region not in console.urls:
            return JSONResponse({"detail": f"unknown region {region!r}"}, status_code=400)
        resp = await console.get(region, routes.execution_path(execution_id))
        if resp is None:
            return JSONResponse({"detail": f"{region} did not answer"}, status_code=503)
        return JSONResponse(_json_or_none(resp) or {"detail": resp.text}, status_code=resp.status_code)

    @app.post("/console/api/switch", include_in_schema=False)
    async def switch(request: Request) -> JSONResponse:
        if not logged_in(request):  # a bearer token alone is not enough: only a console session switches
            return refused()
        if not _same_origin(request):
            return JSONResponse({"detail": "cross-origin request refused"}, status_code=403)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"detail": "send JSON: {\"target\": ..., \"confirm\": ...}"}, status_code=400)
        target = body.get("target") if isinstance(body, dict) else None
        if target not in console.urls:
            return JSONResponse({"detail": f"unknown region {target!r}"}, status_code=400)
        if body.get("confirm") != target:
            return JSONResponse({"detail": f"type the target region's name ({target}) to confirm"}, status_code=400)
        status, record = await console.switch(target)
        return JSONResponse(record, status_code=status)

    @app.post("/console/api/executions/{execution_id}/approve", include_in_schema=False)
    async def approve(execution_id: str, request: Request) -> JSONResponse:
        if not logged_in(request):  # like switching: only a console session approves
            return refused()
        if not _same_origin(request):
            return JSONResponse({"detail": "cross-origin request refused"}, status_code=403)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return JSONResponse({"detail": "send JSON: {\"region\": ..., \"confirm\": ...}"}, status_code=400)
        region = body.get("region")
        if region not in console.urls:
            return JSONResponse({"detail": f"unknown region {region!r}"}, status_code=400)
        status, answer = await console.approve(region, execution_id, body.get("confirm"))
        return JSONResponse(answer, status_code=status)

    @app.api_route("/console/{rest:path}", methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False)
    async def unknown(rest: str) -> JSONResponse:
        return JSONResponse({"detail": f"no console route /console/{rest}"}, status_code=404)

    return console
