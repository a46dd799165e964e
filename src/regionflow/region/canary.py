"""The canary: a tiny file submitted through the access point, followed to COMPLETED, timed end to end."""

from __future__ import annotations

import logging
import time

from regionflow.api.client import ApiClient
from regionflow.config.tls import Verify
from regionflow.errors import RegionflowError
from regionflow.ids import new_version_id
from regionflow.polling import PollTimeout, poll_until
from regionflow.region.metrics import CanaryStatus, RegionMetrics
from regionflow.state.base import TERMINAL_STATUSES, JobStatus

log = logging.getLogger("regionflow.canary")

CANARY_PREFIX = "input/_canary/"


class Canary:
    def __init__(self, region: str, access_point_url: str, token: str, *, header: str, timeout: float,
                 metrics: RegionMetrics, verify: Verify = True):
        self.region = region
        self.verify = verify
        self.url = access_point_url
        self.token = token
        self.header = header.encode()
        self.timeout = timeout
        self.metrics = metrics

    def once(self) -> float | None:
        """Submit one canary and wait for it; returns its latency in seconds, or None when it failed."""
        key = f"{CANARY_PREFIX}{self.region}-{new_version_id()}.csv"
        started = time.monotonic()
        try:
            with ApiClient(self.url, self.token, target="access point", timeout=10, verify=self.verify) as api:
                job_id = api.upload(key, self.header)["job_id"]

                def finished() -> dict | None:
                    view = api.job_or_none(job_id)
                    return view if view is not None and view["status"] in TERMINAL_STATUSES else None

                ok = poll_until(finished, timeout=self.timeout, interval=0.2,
                                what="the canary")["status"] == JobStatus.COMPLETED
        except (RegionflowError, KeyError, ValueError) as exc:  # PollTimeout and ApiError included
            if not isinstance(exc, PollTimeout):
                log.warning("canary failed: %s", exc)
            ok = False
        latency = time.monotonic() - started
        self.metrics.canary.labels(CanaryStatus.SUCCEEDED if ok else CanaryStatus.FAILED).inc()
        if ok:
            self.metrics.canary_latency.set(latency)
        return latency if ok else None
