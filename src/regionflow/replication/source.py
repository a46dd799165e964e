"""Where a replicator reads a source region's feed and objects: the source's gateway over HTTP."""

from __future__ import annotations

from typing import Any, BinaryIO, Protocol

from regionflow.api.client import ApiClient, ApiError
from regionflow.config.tls import Verify
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

    def stats(self, since: int) -> dict[str, Any]:
        """Backlog after since: {"head", "objects": {"count", "oldest"}, "state": {...}}."""
        ...

    def fetch_object(self, key: str, sink: BinaryIO) -> ObjectInfo | None:
        """Write the source's current version of key into sink (streamed: objects may be larger than
        memory) and return its info, or None when absent (sink untouched)."""
        ...


class HttpFeedSource:
    """A source region's gateway, asked with the replication token (its /internal/... routes take no other
    but admin)."""

    def __init__(self, name: str, base_url: str, token: str, timeout: float = 2.0, *, verify: Verify = True):
        self.name = name
        self._client = ApiClient(base_url, token, target=name, timeout=timeout, verify=verify)

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except ApiError as exc:
            # down, or up while its storage or state is not (an outage in that region)
            if exc.unreachable or (exc.status_code or 0) >= 500:
                raise SourceUnavailable(str(exc)) from None
            raise

    def feed(self, since: int, limit: int, kind: str | None = None) -> tuple[list[Change], int]:
        body = self._call(self._client.feed, since, limit, kind)
        return [Change(**c) for c in body["changes"]], int(body["head"])

    def stats(self, since: int) -> dict[str, Any]:
        return self._call(self._client.feed_stats, since)

    def fetch_object(self, key: str, sink: BinaryIO) -> ObjectInfo | None:
        return self._call(self._client.internal_object, key, sink)

    def close(self) -> None:
        self._client.close()
