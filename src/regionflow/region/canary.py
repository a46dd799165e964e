"""The canary: a tiny file submitted through the access point, followed to COMPLETED, timed end to end."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import httpx

from regionflow.ids import new_version_id

if TYPE_CHECKING:
    from regionflow.region.runtime import Region

log = logging.getLogger("regionflow.canary")

CANARY_PREFIX = "input/_canary/"


def canary_once(region: Region) -> float | None:
    """Submit one canary and wait for it; returns its latency in seconds, or None when it failed."""
    cfg = region.config
    header = ",".join(region.orchestrator.pipeline.fields.values()) + "\n"
    key = f"{CANARY_PREFIX}{region.name}-{new_version_id()}.csv"
    headers = {"Authorization": f"Bearer {region.secrets.api_token}"}
    started = time.monotonic()
    try:
        with httpx.Client(base_url=cfg.access_point_url, headers=headers, timeout=10) as http:
            job_id = http.put(f"/objects/{key}", content=header.encode()).raise_for_status().json()["job_id"]
            while time.monotonic() - started < cfg.canary.timeout:
                resp = http.get(f"/jobs/{job_id}")
                if resp.status_code == 200 and resp.json()["status"] in ("COMPLETED", "FAILED"):
                    ok = resp.json()["status"] == "COMPLETED"
                    break
                time.sleep(0.2)
            else:
                ok = False
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        log.warning("canary failed: %s", exc)
        ok = False
    latency = time.monotonic() - started
    region.metrics.canary.labels("succeeded" if ok else "failed").inc()
    if ok:
        region.metrics.canary_latency.set(latency)
    return latency if ok else None
