"""Where a replicator reads a source region's feed and objects: the source's gateway over HTTP."""

from __future__ import annotations

import json
from typing import Protocol
from urllib.parse import quote

import httpx

from regionflow.state.base import Change
from regionflow.storage.base import ObjectInfo


class SourceUnavailable(Exception):
    """The source region did not answer (down, stopped, partitioned)."""


class FeedSource(Protocol):
    name: str

    def feed(self, since: int, limit: int, kind: str | None = None) -> tuple[list[Change], int]:
        """Changes after sequence number since, in order (only one kind: "objects" or "state"), and the
        feed's head as read before them: fewer than limit changes means none other of the kind up to head."""
        ...

    def stats(self, since: int) -> dict:
        """Backlog after since: {"head", "objects": {"count", "oldest"}, "state": {...}}."""
        ...

    def fetch_object(self, key: str) -> tuple[ObjectInfo, bytes] | None:
        """The source's current version of key with its bytes, or None when absent."""
        ...


def info_from_headers(key: str, headers: httpx.Headers) -> ObjectInfo:
    return ObjectInfo(key=key, etag=headers["x-etag"], version_id=headers["x-version-id"],
                      size=int(headers.get("content-length", 0)), content_type=headers.get("content-type", ""),
                      metadata=json.loads(headers.get("x-metadata", "{}")),
                      last_modified=float(headers.get("x-last-modified", 0)))


class HttpFeedSource:
    def __init__(self, name: str, base_url: str, token: str, timeout: float = 2.0):
        self.name = name
        self._client = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"},
                                    timeout=timeout)

    def _get(self, path: str, **params: object) -> httpx.Response:
        try:
            resp = self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"{self.name}: {type(exc).__name__}") from None
        if resp.status_code >= 500:  # up, but its storage or state is not (an outage in that region)
            raise SourceUnavailable(f"{self.name}: HTTP {resp.status_code}: {resp.text[:200]}")
        return resp

    def feed(self, since: int, limit: int, kind: str | None = None) -> list[Change]:
        params: dict[str, object] = {"since": since, "limit": limit}
        if kind:
            params["kind"] = kind
        resp = self._get("/internal/feed", **params)
        resp.raise_for_status()
        body = resp.json()
        return [Change(**c) for c in body["changes"]], int(body["head"])

    def stats(self, since: int) -> dict:
        resp = self._get("/internal/feed/stats", since=since)
        resp.raise_for_status()
        return resp.json()

    def fetch_object(self, key: str) -> tuple[ObjectInfo, bytes] | None:
        resp = self._get(f"/internal/objects/{quote(key, safe='/')}")
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return info_from_headers(key, resp.headers), resp.content

    def close(self) -> None:
        self._client.close()
