"""The ledger's web UI at /ledger/: sign-in, a transfer form, balances and the latest transfers, which
region and database serve you, and for admins Failover / Failback buttons that start the ledger plan.

Plain HTML and one script (no build step), served by every region's gateway and so through the access
point. Sessions are signed cookies (workloads/ledger/users.py: HttpOnly, SameSite=Strict, Path=/ledger),
valid in every region. CSRF: the cookie is never sent cross-site, every state-changing request must also
carry the session's CSRF token in X-CSRF-Token (a page of another origin cannot read it), and the sign-in
form carries a signed nonce.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from regionflow.api import routes
from regionflow.api.wire import auth_header
from regionflow.errors import RegionflowError
from regionflow.region.auth import TokenCheck
from regionflow.region.gateway.ledger import parse_amount
from regionflow.region.runtime import Region
from regionflow.workloads.ledger.service import LedgerService, LedgerUnavailable, TransferRefused, TransferRequest
from regionflow.workloads.ledger.users import SESSION_SECONDS, Session, SessionSigner, UserStore, users_path

COOKIE = "rf_ledger"
PLAN = "ledger"
_STATIC = {"ledger.js": "text/javascript; charset=utf-8", "ledger.css": "text/css; charset=utf-8"}
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
_HEADERS = {"content-security-policy": _CSP, "x-frame-options": "DENY", "cache-control": "no-store",
            "referrer-policy": "same-origin", "x-content-type-options": "nosniff"}


def _static(name: str) -> str:
    return resources.files("regionflow.workloads.ledger").joinpath(f"static/{name}").read_text(encoding="utf-8")


def sign_in_page(nonce: str, message: str = "") -> str:
    note = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>regionflow ledger: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/ledger/static/ledger.css"></head>
<body class="signin"><main><h1>regionflow ledger</h1><p>Money transfers across two regions.</p>{note}
<form method="post" action="/ledger/login">
<input type="hidden" name="nonce" value="{html.escape(nonce)}">
<label>User <input name="user" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form></main></body></html>"""


def app_page(session: Session, region: str, primary: str, regions: list[str]) -> str:
    # What the buttons need is in the page itself: they work before the first state poll has answered.
    data = html.escape(json.dumps({"user": session.user, "admin": session.admin, "csrf": session.csrf,
                                   "region": region, "primary": primary, "regions": regions}))
    return _static("ledger.html").replace("{{SESSION}}", data)


def router(region: Region, tokens: TokenCheck) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    ledger = region.service(LedgerService)
    users = UserStore(users_path(region.config.data_dir))
    signer = SessionSigner(bytes.fromhex(region.secrets.signing_key))
    config = region.config

    def session_of(request: Request) -> Session | None:
        return signer.check(request.cookies.get(COOKIE))

    def guarded(request: Request, *, admin: bool = False, write: bool = True) -> Session | JSONResponse:
        session = session_of(request)
        if session is None:
            return JSONResponse({"detail": "sign in first"}, status_code=401)
        if write and request.headers.get("x-csrf-token") != session.csrf:
            return JSONResponse({"detail": "missing or wrong CSRF token"}, status_code=403)
        if admin and not session.admin:
            return JSONResponse({"detail": "only an admin may switch regions"}, status_code=403)
        return session

    @r.get("/ledger")
    def bare() -> Response:
        return RedirectResponse("/ledger/", status_code=307)

    @r.get(routes.LEDGER_UI)
    def page(request: Request) -> Response:
        session = session_of(request)
        body = (app_page(session, region.name, config.primary, config.region_names) if session
                else sign_in_page(signer.login_nonce()))
        return HTMLResponse(body, headers=_HEADERS)

    @r.post("/ledger/login")
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        field = {k: (v[0] if v else "") for k, v in form.items()}
        if not signer.nonce_ok(field.get("nonce", "")):
            return HTMLResponse(sign_in_page(signer.login_nonce(), "The sign-in form expired; try again."),
                                status_code=403, headers=_HEADERS)
        try:
            admin = users.verify(field.get("user", ""), field.get("password", ""))
        except RegionflowError as exc:
            return HTMLResponse(sign_in_page(signer.login_nonce(), str(exc)), status_code=503, headers=_HEADERS)
        if admin is None:
            return HTMLResponse(sign_in_page(signer.login_nonce(), "Wrong user name or password."), status_code=401,
                                headers=_HEADERS)
        cookie, _ = signer.issue(field["user"], admin)
        resp = RedirectResponse("/ledger/", status_code=303)
        resp.set_cookie(COOKIE, cookie, max_age=SESSION_SECONDS, path="/ledger", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
        return resp

    @r.post("/ledger/logout")
    def logout() -> Response:
        resp = RedirectResponse("/ledger/", status_code=303)
        resp.delete_cookie(COOKIE, path="/ledger", httponly=True, samesite="strict")
        return resp

    @r.get("/ledger/static/{name}")
    def static_file(name: str) -> Response:
        if name not in _STATIC:
            return JSONResponse({"detail": "not found"}, status_code=404)
        return Response(_static(name), media_type=_STATIC[name], headers={"cache-control": "no-cache"})

    @r.get("/ledger/ui/state")
    def state(request: Request) -> Any:
        session = guarded(request, write=False)
        if isinstance(session, JSONResponse):
            return session
        active, epoch = region.owner()
        out: dict[str, Any] = {"user": session.user, "admin": session.admin, "served_by": region.name,
                               "active_region": active, "epoch": epoch, "ledger": ledger.status(),
                               "primary_region": config.primary,
                               "regions": config.region_names}
        for key, read in (("accounts", ledger.accounts), ("transfers", lambda: ledger.latest_transfers(20)),
                          ("missing", ledger.missing)):
            try:
                out[key] = read()
            except LedgerUnavailable as exc:
                out[key] = None
                out.setdefault("errors", {})[key] = str(exc)
        return out

    @r.post("/ledger/ui/transfers")
    async def transfer(request: Request) -> Any:
        session = guarded(request)
        if isinstance(session, JSONResponse):
            return session
        try:
            body = await request.json()
            req = TransferRequest(str(body["from"]), str(body["to"]), parse_amount(str(body["amount"])),
                                  str(body["idempotency_key"])[:200])
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"detail": f"not a transfer: {exc}"}, status_code=422)
        try:
            made, created = ledger.transfer(req)
        except LedgerUnavailable as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)
        except TransferRefused as exc:
            return JSONResponse({"detail": str(exc)}, status_code=exc.status)
        return JSONResponse(made, status_code=201 if created else 200)

    @r.post("/ledger/ui/switch")
    async def switch(request: Request) -> Any:
        session = guarded(request, admin=True)
        if isinstance(session, JSONResponse):
            return session
        try:
            body = await request.json()
            action = str(body["action"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"detail": "expected {\"action\": \"failover\"|\"failback\", \"confirm\"}"},
                                status_code=422)
        others = [n for n in config.region_names if n != config.primary]
        target = {"failover": others[0], "failback": config.primary}.get(action)
        if target is None:
            return JSONResponse({"detail": f"unknown action {action!r}"}, status_code=422)
        if body.get("confirm") != target:
            return JSONResponse({"detail": f"type the target region's name ({target}) to confirm"}, status_code=422)
        from regionflow.config.plans import plan_by_name

        try:
            plan_path = str(plan_by_name(config, PLAN).resolve())
        except RegionflowError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)
        # The plan runs in the region it activates, like `regionflow failover` (it needs nothing of the other).
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=2.0), verify=config.tls_verify(),
                                         headers=auth_header(region.secrets.admin_token)) as client:
                resp = await client.post(config.region_url(target) + routes.PLANS_RUN, json={
                    "plan_path": plan_path, "activate": target, "practice": False,
                    "started_by": f"ledger UI ({session.user})", "wait": False})
        except httpx.HTTPError as exc:
            return JSONResponse({"detail": f"{target} did not answer: {type(exc).__name__}"}, status_code=503)
        record = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
        if resp.status_code >= 400:
            return JSONResponse({"detail": record.get("detail", resp.text[:300])}, status_code=resp.status_code)
        return {"execution_id": record.get("execution_id"), "region": target, "action": action}

    @r.get("/ledger/ui/executions/{execution_id}")
    async def execution(execution_id: str, request: Request, region_name: str = "") -> Any:
        session = guarded(request, admin=True, write=False)
        if isinstance(session, JSONResponse):
            return session
        if region_name not in config.region_names:
            return JSONResponse({"detail": "unknown region"}, status_code=422)
        try:
            async with httpx.AsyncClient(timeout=5.0, verify=config.tls_verify(),
                                         headers=auth_header(region.secrets.admin_token)) as client:
                resp = await client.get(config.region_url(region_name) + routes.execution_path(execution_id))
        except httpx.HTTPError as exc:
            return JSONResponse({"detail": f"{region_name} did not answer: {type(exc).__name__}"}, status_code=503)
        return JSONResponse(resp.json(), status_code=resp.status_code)

    return r
