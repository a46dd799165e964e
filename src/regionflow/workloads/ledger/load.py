"""Load for the ledger: seed accounts, then many concurrent transfers through the access point.

Every transfer has its own idempotency key and is retried with that same key while the ledger answers
503 (a failover in progress) or does not answer, so a retry can never move money twice. Each transfer
acknowledged (201/200) is appended to the acks file as one JSON line at once, so what a drill knows was
acknowledged survives whatever is killed next.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from regionflow.api import routes

__all__ = ["LoadResult", "account_ids", "read_acks", "run_load", "seed_accounts"]

RETRY_PAUSE = 0.1


def account_ids(count: int, prefix: str = "acct-") -> list[str]:
    width = max(4, len(str(count)))
    return [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]


def seed_accounts(client: httpx.Client, count: int, balance: str, prefix: str = "acct-") -> dict[str, Any]:
    """Open count accounts with balance each (existing ones are kept); the server's answer."""
    accounts = dict.fromkeys(account_ids(count, prefix), balance)
    resp = client.post(routes.LEDGER_ACCOUNTS, json={"accounts": accounts})
    if resp.status_code != 200:
        raise RuntimeError(f"seeding the accounts failed: HTTP {resp.status_code}: {resp.text[:300]}")
    return resp.json()


@dataclass
class LoadResult:
    requested: int
    acknowledged: int = 0
    repeated: int = 0  # acknowledged with 200: a retry found its first commit
    refused: dict[str, int] = field(default_factory=dict)  # status -> count (422 insufficient funds, ...)
    gave_up: int = 0  # never acknowledged within retry_for
    retries: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    unavailable_seconds: float = 0.0  # longest stretch one transfer waited through 503s and errors

    def as_dict(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else None

        return {"requested": self.requested, "acknowledged": self.acknowledged, "repeated": self.repeated,
                "refused": self.refused, "gave_up": self.gave_up, "retries": self.retries,
                "seconds": round(self.seconds, 3),
                "transfers_per_second": round(self.acknowledged / self.seconds, 1) if self.seconds else None,
                "latency_ms": {"p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99), "max": pct(1.0)},
                "longest_wait_seconds": round(self.unavailable_seconds, 3)}


def run_load(client_factory: Callable[[], httpx.Client], accounts: list[str], transfers: int, concurrency: int, *,
             acks: TextIO | None = None, retry_for: float = 120.0, seed: int | None = None,
             max_amount_cents: int = 500, progress: Callable[[int], None] | None = None,
             stop: threading.Event | None = None) -> LoadResult:
    """transfers random transfers between accounts, concurrency at a time; see the module docstring."""
    if len(accounts) < 2:
        raise ValueError("a load needs at least two accounts")
    result = LoadResult(requested=transfers)
    lock = threading.Lock()
    counter = iter(range(transfers))
    rng = random.Random(seed)
    started = time.monotonic()

    def next_transfer() -> dict[str, str] | None:
        with lock:
            if next(counter, None) is None or (stop is not None and stop.is_set()):
                return None
            src, dst = rng.sample(accounts, 2)
            cents = rng.randint(1, max_amount_cents)
        return {"from": src, "to": dst, "amount": f"{cents // 100}.{cents % 100:02d}",
                "idempotency_key": str(uuid.uuid4())}

    def one(client: httpx.Client, body: dict[str, str]) -> None:
        first = time.monotonic()
        tries = 0
        while True:
            tries += 1
            try:
                resp = client.post(routes.LEDGER_TRANSFERS, json=body)
                status = resp.status_code
            except httpx.HTTPError:
                status = 0
            if status in (200, 201):
                ack = resp.json()
                done = time.monotonic()
                line = json.dumps({**ack, "acked_at": time.time()})
                with lock:
                    if acks is not None:
                        acks.write(line + "\n")
                        acks.flush()
                    result.acknowledged += 1
                    result.repeated += status == 200
                    result.retries += tries - 1
                    result.latencies.append(done - first)
                    if tries > 1:
                        result.unavailable_seconds = max(result.unavailable_seconds, done - first)
                return
            if status not in (0, 502, 503, 504):
                with lock:
                    result.refused[str(status)] = result.refused.get(str(status), 0) + 1
                    result.retries += tries - 1
                return
            if time.monotonic() - first > retry_for:
                with lock:
                    result.gave_up += 1
                    result.retries += tries - 1
                return
            time.sleep(RETRY_PAUSE)

    def worker() -> None:
        with client_factory() as client:
            while (body := next_transfer()) is not None:
                one(client, body)
                if progress is not None:
                    progress(1)

    threads = [threading.Thread(target=worker, name=f"ledger-load-{i}", daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.seconds = time.monotonic() - started
    return result


def read_acks(path: Path) -> list[dict[str, Any]]:
    """The acknowledged transfers of an acks file (a torn last line, from a kill, is skipped)."""
    acks = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            acks.append(json.loads(line))
        except ValueError:
            continue
    return acks
