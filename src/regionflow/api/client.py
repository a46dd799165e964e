"""Typed clients for a region's gateway (or the access point, which forwards the same API).

`ApiClient` is synchronous (CLI, drill, switch steps, replication); `AsyncApiClient` serves the console
and anything else inside an event loop. Both raise ApiError with the server's one-line detail, or say
the target was unreachable (a certificate it could not verify named as such). Both take `verify`: what
https:// servers are checked against (Config.tls_verify(): the topology's tls_ca, else the default store).
`poll_until` (regionflow.polling) is the one "wait for a condition" loop callers use.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import httpx

from regionflow.api import routes
from regionflow.api.wire import auth_header, info_from_headers
from regionflow.config.tls import Verify
from regionflow.errors import RegionflowError
from regionflow.polling import PollTimeout, poll_until
from regionflow.state.base import TERMINAL_STATUSES
from regionflow.storage.base import ObjectInfo

if TYPE_CHECKING:
    from regionflow.config import Config


class ApiError(RegionflowError):
    """The server answered with an error (status_code set; the message is its detail) or did not answer
    at all (status_code None)."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code

    @property
    def unreachable(self) -> bool:
        return self.status_code is None

    @property
    def not_found(self) -> bool:
        return self.status_code == 404


_BLOCK = 1 << 20


def _file_blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while block := fh.read(_BLOCK):
            yield block


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text
    return str(body.get("detail", resp.text)) if isinstance(body, dict) else resp.text


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind an httpx error, if there is one (httpx wraps it in ConnectError)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def unreachable_message(target: str, base_url: str, exc: httpx.HTTPError) -> str:
    """Why target did not answer, in one line; a TLS failure says what to check."""
    tls = _tls_failure(exc)
    if isinstance(tls, ssl.SSLCertVerificationError):
        return (f"{target} ({base_url}): TLS certificate verification failed: {tls.verify_message}; set tls_ca "
                f"in regionflow.toml to the CA file that signed the server's certificate")
    if tls is not None:
        return f"{target} ({base_url}): TLS handshake failed: {tls.reason or tls}"
    return f"{target} ({base_url}) is not reachable: {type(exc).__name__}"


def _base_and_token(config: Config, region: str | None, admin: bool) -> tuple[str, str, str]:
    from regionflow.config import load_secrets

    secrets = load_secrets(config)
    base = config.region_url(region) if region else config.access_point_url
    return base, (secrets.admin_token if admin else secrets.api_token), region or "access point"


@functools.cache
def _default_trust() -> ssl.SSLContext:
    """httpx's default trust (certifi, or SSL_CERT_FILE), made once per process: making it reads the whole CA
    bundle (about 20 ms of CPU), and regions, the loader and plan checks make many short-lived clients."""
    return httpx.create_ssl_context()


def shared_verify(verify: Verify) -> Verify:
    """verify for an httpx client, the default trust (True) shared by every client of the process."""
    return _default_trust() if verify is True else verify


class ApiClient:
    """One region's API (or the access point's), with one token."""

    def __init__(self, base_url: str, token: str, *, target: str = "", timeout: float | httpx.Timeout = 30.0,
                 transport: httpx.BaseTransport | None = None, verify: Verify = True):
        self.base_url = base_url
        self.target = target or base_url
        self._http = httpx.Client(base_url=base_url, headers=auth_header(token), timeout=timeout,
                                  transport=transport, verify=shared_verify(verify))

    @classmethod
    def for_config(cls, config: Config, region: str | None = None, *, admin: bool = False,
                   timeout: float | httpx.Timeout = 30.0) -> ApiClient:
        """A client for region (or the access point when None) with the api or admin token from secrets,
        verifying TLS as the topology says."""
        base, token, target = _base_and_token(config, region, admin)
        return cls(base, token, target=target, timeout=timeout, verify=config.tls_verify())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, allow: Iterable[int] = (), **kwargs: Any) -> httpx.Response:
        """Send one request; ApiError for no answer or an error status not in allow."""
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(unreachable_message(self.target, self.base_url, exc)) from None
        if resp.status_code >= 400 and resp.status_code not in allow:
            raise ApiError(f"{self.target}: HTTP {resp.status_code}: {_detail(resp)}", resp.status_code)
        return resp

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    # -- health ------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self.json("GET", routes.HEALTH)

    def health_deep(self) -> dict[str, Any]:
        """The deep health report; a failing region answers 503 with the same report, returned here."""
        return self.json("GET", routes.HEALTH_DEEP, allow=(503,))

    # -- objects -----------------------------------------------------------------------------------
    def upload(self, key: str, data: bytes | Path | Iterable[bytes], content_type: str = "text/csv",
               size: int | None = None) -> dict[str, Any]:
        """PUT an object (a file is streamed, never read whole); the answer names its version, etag, the
        job id (under input/) and how the upload was replicated."""
        headers = {"content-type": content_type}
        body: bytes | Iterable[bytes]
        if isinstance(data, Path):
            body, size = _file_blocks(data), data.stat().st_size
        else:
            body = data
        if size is not None and not isinstance(body, bytes):
            headers["content-length"] = str(size)
        return self.json("PUT", routes.object_path(key), content=body, headers=headers)

    def head_object(self, key: str) -> ObjectInfo | None:
        resp = self.request("HEAD", routes.object_path(key), allow=(404,))
        return None if resp.status_code == 404 else info_from_headers(key, resp.headers)

    def download(self, key: str) -> bytes:
        return self.request("GET", routes.object_path(key)).content

    # -- jobs --------------------------------------------------------------------------------------
    def job(self, job_id: str) -> dict[str, Any]:
        return self.json("GET", routes.job_path(job_id))

    def job_or_none(self, job_id: str) -> dict[str, Any] | None:
        """The job's view, or None while this region does not know it (not created or not replicated yet)."""
        resp = self.request("GET", routes.job_path(job_id), allow=(404,))
        return None if resp.status_code == 404 else resp.json()

    def jobs(self, status: str | None = None, limit: int = 200, prefix: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        if prefix:
            params["prefix"] = prefix
        return self.json("GET", routes.JOBS, params=params)["jobs"]

    def chunks(self, job_id: str) -> list[dict[str, Any]]:
        return self.json("GET", routes.job_chunks_path(job_id))["chunks"]

    def rejects(self, job_id: str, limit: int = 1000, offset: int = 0) -> dict[str, Any]:
        """{"total", "rejects": [...]} for one page."""
        return self.json("GET", routes.job_rejects_path(job_id), params={"limit": limit, "offset": offset})

    def all_rejects(self, job_id: str, page: int = 100_000) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while True:
            got = self.rejects(job_id, limit=page, offset=len(rows))["rejects"]
            rows += got
            if len(got) < page:
                return rows

    def wait_jobs(self, job_ids: list[str], timeout: float, poll: float = 0.25) -> list[dict[str, Any]]:
        """Poll until every job is COMPLETED or FAILED; ApiError on timeout, naming the unfinished ones."""
        done: dict[str, dict[str, Any]] = {}

        def all_finished() -> bool:
            for job_id in sorted(set(job_ids) - set(done)):
                view = self.job_or_none(job_id)
                if view is not None and view["status"] in TERMINAL_STATUSES:
                    done[job_id] = view
            return len(done) == len(set(job_ids))

        try:
            poll_until(all_finished, timeout=timeout, interval=poll)
        except PollTimeout:
            pending = sorted(set(job_ids) - set(done))
            raise ApiError(f"timed out after {timeout:g}s waiting for {len(pending)} job(s): "
                           + ", ".join(pending[:5])) from None
        return [done[j] for j in job_ids]

    def outbox(self) -> list[dict[str, Any]]:
        return self.json("GET", routes.OUTBOX)["notifications"]

    def load_reference(self, table: str, data: bytes | Path, key: str = "uuid") -> dict[str, Any]:
        body = data.read_bytes() if isinstance(data, Path) else data
        return self.json("PUT", routes.reference_path(table), params={"key": key}, content=body)

    # -- routing control and replication -----------------------------------------------------------
    def control(self) -> dict[str, Any]:
        return self.json("GET", routes.CONTROL)

    def set_active(self, region: str, epoch: int) -> dict[str, Any]:
        return self.json("POST", routes.CONTROL_ACTIVE, json={"region": region, "epoch": epoch})

    def replication(self) -> list[dict[str, Any]]:
        return self.replication_report()["directions"]

    def replication_report(self) -> dict[str, Any]:
        """Every direction into this region, and how its uploads are replicated (mode, lagging peers)."""
        return self.json("GET", routes.REPLICATION)

    def replication_action(self, source: str, action: str, kind: str = "all") -> dict[str, Any]:
        return self.json("POST", routes.replication_action_path(source, action), params={"kind": kind})

    # -- what other regions pull -------------------------------------------------------------------
    def feed(self, since: int, limit: int, kind: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"since": since, "limit": limit}
        if kind:
            params["kind"] = kind
        return self.json("GET", routes.FEED, params=params)

    def feed_stats(self, since: int = 0) -> dict[str, Any]:
        return self.json("GET", routes.FEED_STATS, params={"since": since})

    def internal_object(self, key: str, sink: BinaryIO) -> ObjectInfo | None:
        """Stream this region's current version of key into sink; its info, or None when absent."""
        try:
            with self._http.stream("GET", routes.internal_object_path(key)) as resp:
                if resp.status_code == 404:
                    return None
                if resp.status_code >= 400:
                    resp.read()
                    raise ApiError(f"{self.target}: HTTP {resp.status_code}: {_detail(resp)}", resp.status_code)
                for block in resp.iter_bytes(_BLOCK):
                    sink.write(block)
                return info_from_headers(key, resp.headers)
        except httpx.HTTPError as exc:
            raise ApiError(f"{self.target} ({self.base_url}) is not reachable: {type(exc).__name__}") from None

    def applied_from(self, source: str) -> dict[str, Any]:
        """This region's replication from source as of its last pass (reachable, paused, checkpoint)."""
        return self.json("GET", routes.internal_applied_path(source))

    def replica_apply(self, source: str, changes: list[dict[str, Any]],
                      inline: list[dict[str, str]] | None = None) -> dict[str, Any]:
        """Ask this region to store an upload of source now: the object changes are stored from the bytes
        in inline ({key, version_id, data: base64}) or else fetched from source, the state changes applied
        (what an upload acknowledged in sync mode waits for)."""
        return self.json("POST", routes.INTERNAL_REPLICA,
                         json={"source": source, "changes": changes, "inline": inline or []})

    # -- region switch -----------------------------------------------------------------------------
    def run_plan(self, plan_path: str, activate: str, *, practice: bool = False, started_by: str = "api",
                 wait: bool = False) -> dict[str, Any]:
        return self.json("POST", routes.PLANS_RUN, json={"plan_path": plan_path, "activate": activate,
                                                         "practice": practice, "started_by": started_by,
                                                         "wait": wait})

    def executions(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.json("GET", routes.EXECUTIONS, params={"limit": limit})["executions"]

    def execution(self, execution_id: str) -> dict[str, Any]:
        return self.json("GET", routes.execution_path(execution_id))

    def approve(self, execution_id: str, by: str) -> dict[str, Any]:
        return self.json("POST", routes.execution_approve_path(execution_id), json={"by": by})

    def evaluation(self) -> dict[str, Any]:
        return self.json("GET", routes.EVALUATION)

    def triggers(self) -> dict[str, Any]:
        """This region's plan triggers as it last evaluated them."""
        return self.json("GET", routes.TRIGGERS)

    # -- fault injection (admin) -------------------------------------------------------------------
    def faults(self) -> list[dict[str, Any]]:
        return self.json("GET", routes.FAULTS)["faults"]

    def inject_fault(self, kind: str, duration: float, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.json("POST", routes.FAULTS, json={"kind": kind, "duration": duration,
                                                      "params": dict(params or {})})

    def clear_faults(self, fault_id: str | None = None) -> list[dict[str, Any]]:
        params = {"fault_id": fault_id} if fault_id else {}
        return self.json("DELETE", routes.FAULTS, params=params)["cleared"]


class AsyncApiClient:
    """The async counterpart for callers inside an event loop; get() answers None when the region did not
    answer in time, so a page can show a region as down instead of failing."""

    def __init__(self, token: str, *, timeout: float | httpx.Timeout = 1.0, verify: Verify = True):
        self._token = token
        self._http = httpx.AsyncClient(timeout=timeout, headers=auth_header(token), verify=shared_verify(verify))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(self, base_url: str, path: str, **params: Any) -> httpx.Response | None:
        try:
            return await self._http.get(f"{base_url}{path}", params=params or None)
        except httpx.HTTPError:
            return None

    async def post(self, base_url: str, path: str, *, json: Any, token: str | None = None,
                   timeout: float | httpx.Timeout | None = None) -> httpx.Response:
        """POST (with another token if given); httpx.HTTPError propagates: the caller says what was not done."""
        headers = auth_header(token) if token else None
        return await self._http.post(f"{base_url}{path}", json=json, headers=headers,
                                     timeout=timeout if timeout is not None else self._http.timeout)
