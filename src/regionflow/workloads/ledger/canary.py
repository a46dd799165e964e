"""The ledger's canary: one small transfer per interval through the access point, per region.

Each region moves 0.01 back and forth between its own two canary accounts (opened on first use with the
admin token), each time under a new idempotency key, so the canary exercises the whole write path (access
point, active region, database primary, commit) without touching anyone's money.
"""

from __future__ import annotations

import logging
import time
import uuid

import httpx

from regionflow.api import routes
from regionflow.api.wire import auth_header
from regionflow.config.tls import Verify
from regionflow.workloads.ledger.metrics import LedgerMetrics

log = logging.getLogger("regionflow.ledger.canary")

CANARY_BALANCE = "1.00"


class LedgerCanary:
    def __init__(self, region: str, access_point_url: str, api_token: str, admin_token: str, *,
                 metrics: LedgerMetrics, verify: Verify = True, timeout: float = 10.0):
        self.accounts = (f"canary-{region}-a", f"canary-{region}-b")
        self.url = access_point_url
        self.api_token, self.admin_token = api_token, admin_token
        self.metrics = metrics
        self.verify = verify
        self.timeout = timeout
        self._opened = False
        self._forward = True

    def _open_accounts(self, client: httpx.Client) -> None:
        resp = client.post(routes.LEDGER_ACCOUNTS, json={"accounts": dict.fromkeys(self.accounts, CANARY_BALANCE)},
                           headers=auth_header(self.admin_token))
        self._opened = resp.status_code == 200

    def once(self) -> float | None:
        """One canary transfer; its latency in seconds, or None when it failed."""
        src, dst = self.accounts if self._forward else self.accounts[::-1]
        started = time.monotonic()
        ok = False
        try:
            with httpx.Client(base_url=self.url, timeout=self.timeout, verify=self.verify,
                              headers=auth_header(self.api_token)) as client:
                if not self._opened:
                    self._open_accounts(client)
                resp = client.post(routes.LEDGER_TRANSFERS, json={"from": src, "to": dst, "amount": "0.01",
                                                                  "idempotency_key": f"canary-{uuid.uuid4()}"})
                ok = resp.status_code in (200, 201)
                if ok:
                    self._forward = not self._forward
                elif resp.status_code == 404:
                    self._opened = False  # a fresh ledger: open the accounts again
                else:
                    log.warning("ledger canary: HTTP %s: %s", resp.status_code, resp.text[:200])
        except httpx.HTTPError as exc:
            log.warning("ledger canary: %s", type(exc).__name__)
        latency = time.monotonic() - started
        self.metrics.canary.labels("succeeded" if ok else "failed").inc()
        if ok:
            self.metrics.canary_latency.set(latency)
        return latency if ok else None
