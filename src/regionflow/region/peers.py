"""The regions (this one included) as the region switch asks them (switch.context.Peers), over their APIs."""

from __future__ import annotations

from typing import Any

from regionflow.api.client import ApiClient, ApiError
from regionflow.config.tls import Verify
from regionflow.switch.context import PeerActivity


class HttpPeers:
    def __init__(self, urls: dict[str, str], token: str, *, verify: Verify = True):
        self._urls = urls
        self._token = token
        self._verify = verify

    def _client(self, region: str, timeout: float) -> ApiClient:
        return ApiClient(self._urls[region], self._token, target=region, timeout=timeout, verify=self._verify)

    def deep_health(self, region: str) -> str:
        with self._client(region, 1.0) as client:
            try:
                return str(client.health_deep().get("status", "unknown"))
            except ApiError as exc:
                if exc.unreachable:
                    return f"unreachable ({str(exc).rsplit(': ', 1)[-1]})"
                return f"HTTP {exc.status_code}"
            except ValueError as exc:  # an answer that is not JSON
                return f"unreachable ({type(exc).__name__})"

    def health(self, region: str) -> dict[str, Any] | None:
        """region's shallow /health answer; None when it cannot be reached."""
        with self._client(region, 1.0) as client:
            try:
                return client.health()
            except (ApiError, ValueError):
                return None

    def activity(self, region: str) -> PeerActivity | None:
        with self._client(region, 2.0) as client:
            try:
                health = client.health()
                head = client.feed_stats(0)["head"]
            except (ApiError, ValueError, KeyError):
                return None
        return PeerActivity(epoch_seen=health.get("epoch_seen"), busy=bool(health.get("busy")), feed_head=head)
