"""HTTP client for the CLI: talks to the access point, or to one region with region=NAME."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from regionflow.config import Config, load_secrets
from regionflow.errors import RegionflowError


class ApiError(RegionflowError):
    """The server answered with an error; the message is its detail."""


class Client:
    def __init__(self, config: Config, region: str | None = None, *, admin: bool = False, timeout: float = 30.0):
        self.config = config
        secrets = load_secrets(config)
        self.target = region or "access point"
        base = config.region_url(region) if region else config.access_point_url
        token = secrets.admin_token if admin else secrets.api_token
        self._http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(f"{self.target} ({self._http.base_url}) is not reachable: {type(exc).__name__}") from None
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text
            raise ApiError(f"{self.target}: HTTP {resp.status_code}: {detail}")
        return resp

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    # -- operations --------------------------------------------------------------------------------
    def upload(self, path: Path, key: str) -> dict:
        with path.open("rb") as fh:
            return self.json("PUT", f"/objects/{quote(key, safe='/')}", content=fh.read(),
                             headers={"content-type": "text/csv"})

    def load_reference(self, path: Path, table: str, key: str) -> dict:
        return self.json("PUT", f"/reference/{quote(table)}", params={"key": key}, content=path.read_bytes())

    def job(self, job_id: str) -> dict:
        return self.json("GET", f"/jobs/{quote(job_id)}")

    def jobs(self) -> list[dict]:
        return self.json("GET", "/jobs")["jobs"]

    def wait(self, job_ids: list[str], timeout: float, poll: float = 0.25) -> list[dict]:
        """Poll until every job is COMPLETED or FAILED; ApiError on timeout, naming the unfinished ones."""
        deadline = time.monotonic() + timeout
        pending = set(job_ids)
        done: dict[str, dict] = {}
        while True:
            for job_id in sorted(pending):
                try:
                    view = self.job(job_id)
                except ApiError as exc:
                    if "HTTP 404" not in str(exc):
                        raise
                    continue  # not created (or not replicated) yet
                if view["status"] in ("COMPLETED", "FAILED"):
                    done[job_id] = view
                    pending.discard(job_id)
            if not pending:
                return [done[j] for j in job_ids]
            if time.monotonic() > deadline:
                raise ApiError(f"timed out after {timeout:g}s waiting for {len(pending)} job(s): "
                               + ", ".join(sorted(pending)[:5]))
            time.sleep(poll)

    def download(self, key: str) -> bytes:
        return self.request("GET", f"/objects/{quote(key, safe='/')}").content
