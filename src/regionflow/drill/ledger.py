"""The ledger's DR drill (`drill --workload ledger --scenario kill`): transfers under load, SIGKILL of
us-east-1 (its region process and its database primary), failover with the ledger plan while the load
goes on, the old primary back fenced (its missing transfers recorded), failback by switchover, and the
invariant check.

Invariants (pure checks of what was collected):
- every acknowledged transfer is on the final primary exactly once, or listed in the missing-transaction
  report (lost with the killed primary: the RPO);
- no idempotency key appears twice on the final primary, nor any transfer id;
- the total balance is what was seeded (every transfer moved money, none made or destroyed it);
- requested = acknowledged + refused + gave up (no transfer unaccounted for);
- the standby after failback holds exactly the primary's transfers.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from regionflow.api import routes
from regionflow.api.fleet import run_plan_and_wait
from regionflow.api.wire import auth_header
from regionflow.config import init_project, load_config, load_secrets
from regionflow.errors import RegionflowError
from regionflow.polling import PollTimeout, poll_until
from regionflow.region.stack import kill_region, start_stack, stop_stack
from regionflow.workloads.ledger.load import LoadResult, account_ids, read_acks, run_load, seed_accounts

__all__ = ["LEDGER_SCENARIOS", "run_ledger_drill"]

LEDGER_SCENARIOS = ("kill",)
PRIMARY, STANDBY = "us-east-1", "us-west-2"


def _invariants(acks: list[dict[str, Any]], final: dict[str, Any], standby: dict[str, Any],
                missing: dict[str, Any], seeded_total: Decimal, load: LoadResult) -> tuple[dict[str, bool], list[str]]:
    violations: list[str] = []
    on_primary = Counter(t["transfer_id"] for t in final["transfers"])
    keys = Counter(t["idempotency_key"] for t in final["transfers"])
    missing_ids = {t["transfer_id"] for t in missing["transfers"]}
    reapplied = {t["transfer_id"] for t in missing["transfers"] if t["reapply_result"] == "reapplied"}
    for ack in acks:
        tid = ack["transfer_id"]
        if on_primary[tid] == 0 and tid not in missing_ids:
            violations.append(f"acknowledged transfer {tid} is neither on the primary nor in the missing report")
        if on_primary[tid] and tid in missing_ids and tid not in reapplied:
            violations.append(f"transfer {tid} is on the primary and also reported missing")
    dup_ids = [t for t, n in on_primary.items() if n > 1]
    dup_keys = [k for k, n in keys.items() if n > 1]
    violations += [f"transfer {t} is on the primary {on_primary[t]} times" for t in dup_ids]
    violations += [f"idempotency key {k} is on the primary {keys[k]} times" for k in dup_keys]
    total_ok = Decimal(final["total_balance"]) == seeded_total
    if not total_ok:
        violations.append(f"total balance {final['total_balance']} is not the seeded {seeded_total}")
    accounted = load.requested == load.acknowledged + sum(load.refused.values()) + load.gave_up
    if not accounted:
        violations.append(f"{load.requested} transfers requested but {load.acknowledged} acknowledged, "
                          f"{sum(load.refused.values())} refused and {load.gave_up} given up")
    same = ({t["transfer_id"] for t in standby["transfers"]} == set(on_primary)
            and standby["total_balance"] == final["total_balance"])
    if not same:
        violations.append(f"the standby ({standby['region']}) does not hold the primary's transfers after failback")
    checks = {
        "every_acknowledged_transfer_on_primary_or_reported_missing": not any("neither" in v for v in violations),
        "no_transfer_twice": not dup_ids and not dup_keys,
        "total_balance_conserved": total_ok,
        "every_transfer_accounted_for": accounted,
        "standby_equals_primary_after_failback": same,
        "no_transfer_given_up": load.gave_up == 0,
    }
    return checks, violations


class _LedgerDrill:
    def __init__(self, root: Path, transfers: int, concurrency: int, accounts: int, deadline: float,
                 narrate: Any | None):
        self.root = root
        self.transfers = transfers
        self.concurrency = concurrency
        self.accounts = accounts
        self.deadline = deadline
        self.narrate = narrate
        self.t0 = time.monotonic()
        self.timeline: list[dict[str, Any]] = []
        self.steps: dict[str, Any] = {}
        self.config: Any = None
        self.started = False

    def say(self, event: str) -> None:
        t = time.monotonic() - self.t0
        self.timeline.append({"t": round(t, 3), "event": event})
        if self.narrate is not None:
            self.narrate(f"[{t:6.1f}s] {event}")

    def left(self, cap: float) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise RegionflowError("the drill ran out of time")
        return min(cap, remaining)

    def client(self, admin: bool = False, region: str | None = None) -> httpx.Client:
        secrets = load_secrets(self.config)
        token = secrets.admin_token if admin else secrets.api_token
        base = self.config.region_url(region) if region else self.config.access_point_url
        return httpx.Client(base_url=base, headers=auth_header(token), timeout=10.0, verify=self.config.tls_verify())

    def run(self) -> dict[str, Any]:
        path = init_project(self.root, ledger=True)
        self.config = cfg = load_config(path)
        self.say("stack: starting (two regions, the ledger's primary in us-east-1, its standby in us-west-2)")
        start_stack(path, cfg, timeout=self.left(120))
        self.started = True
        balance = "1000.00"
        with self.client(admin=True) as c:
            seed_accounts(c, self.accounts, balance)
        seeded = Decimal(balance) * self.accounts
        self.say(f"seeded {self.accounts} accounts of {balance}")
        acks_path = self.root / "acks.jsonl"
        acks_file = acks_path.open("a", encoding="utf-8")
        done_count = [0]
        holder: dict[str, Any] = {}

        def load() -> None:
            try:
                holder["result"] = run_load(lambda: self.client(), account_ids(self.accounts), self.transfers,
                                            self.concurrency, acks=acks_file, retry_for=self.left(300),
                                            progress=lambda n: done_count.__setitem__(0, done_count[0] + n))
            except BaseException as exc:  # reported by the drill
                holder["error"] = exc

        loader = threading.Thread(target=load, name="ledger-drill-load", daemon=True)
        loader.start()
        try:
            poll_until(lambda: done_count[0] >= self.transfers // 3 or not loader.is_alive(),
                       timeout=self.left(120), interval=0.05, what="a third of the transfers")
            self.say(f"{done_count[0]} transfers done: SIGKILL of {PRIMARY} (region process and database primary)")
            killed_at = time.time()
            self.steps["killed"] = kill_region(cfg, PRIMARY)
            record = run_plan_and_wait(cfg, "ledger", STANDBY, practice=False, timeout=self.left(300),
                                       started_by="drill")
            self.steps["failover"] = record
            if record["status"] != "SUCCEEDED":
                raise RegionflowError(f"failover {record['execution_id']} {record['status']}: {record.get('error')}")
            self.say(f"failover to {STANDBY}: {record['status']} (RTO {record.get('rto_seconds')} s)")
            first_after = _first_ack_after(acks_path, killed_at, lambda: loader.is_alive(), self.left(120))
            loader.join(self.left(600))
            if loader.is_alive():
                raise RegionflowError("the load did not finish")
        finally:
            acks_file.flush()
        if "error" in holder:
            raise RegionflowError(f"the load failed: {holder['error']}")
        result: LoadResult = holder["result"]
        self.say(f"load done: {result.acknowledged} acknowledged of {result.requested}")
        self.say(f"{PRIMARY} back: its database starts fenced, what it alone committed is recorded")
        start_stack(path, cfg, timeout=self.left(120))
        with self.client() as c:
            missing_at_return = c.get(routes.LEDGER_MISSING).json()
        self.say(f"missing-transaction report: {missing_at_return['count']} transfer(s), {missing_at_return['amount']}")
        back = run_plan_and_wait(cfg, "ledger", PRIMARY, practice=False, timeout=self.left(300), started_by="drill")
        self.steps["failback"] = back
        if back["status"] != "SUCCEEDED":
            raise RegionflowError(f"failback {back['execution_id']} {back['status']}: {back.get('error')}")
        self.say(f"failback to {PRIMARY}: {back['status']} (RTO {back.get('rto_seconds')} s)")
        # Read from the final primary itself: the access point follows the routing control within a second.
        with self.client(region=PRIMARY) as c:
            final = c.get(routes.LEDGER_AUDIT).json()
            missing = c.get(routes.LEDGER_MISSING).json()
        with self.client(region=STANDBY) as c:
            def standby_caught_up() -> dict[str, Any] | None:
                view = c.get(routes.LEDGER_AUDIT).json()
                return view if view.get("transfer_count") == final["transfer_count"] else None

            try:
                standby = poll_until(standby_caught_up, timeout=self.left(60), interval=0.1,
                                     what="the standby to replay the final primary")
            except PollTimeout:
                standby = c.get(routes.LEDGER_AUDIT).json()
        acks = read_acks(acks_path)
        checks, violations = _invariants(acks, final, standby, missing, seeded, result)
        lost = [t for t in missing["transfers"] if t["transfer_id"] in {a["transfer_id"] for a in acks}]
        commit_times = [t["committed_at"] for t in lost if t["committed_at"]]
        rpo_seconds = 0.0
        if commit_times:
            from datetime import datetime

            earliest = min(datetime.fromisoformat(t).timestamp() for t in commit_times)
            rpo_seconds = round(max(0.0, killed_at - earliest), 3)
        return {
            "workload": "ledger", "scenario": "kill", "passed": all(checks.values()),
            "transfers": self.transfers, "concurrency": self.concurrency, "accounts": self.accounts,
            "load": result.as_dict(),
            "rto_seconds": {"failover_plan": record.get("rto_seconds"), "failback_plan": back.get("rto_seconds"),
                            "writes_unavailable": _longest_gap_after(acks, killed_at),
                            "first_ack_after_kill": (round(first_after - killed_at, 3) if first_after else None)},
            "rpo": {"transfers": len(lost), "seconds": rpo_seconds,
                    "amount": f"{sum((Decimal(t['amount']) for t in lost), Decimal(0)):.2f}"},
            "missing_report": {"count": missing["count"], "amount": missing["amount"]},
            "final": {"primary": final["region"], "transfers": final["transfer_count"],
                      "total_balance": final["total_balance"], "seeded_total": f"{seeded:.2f}"},
            "invariants": checks, "violations": violations[:50], "timeline": self.timeline,
            "executions": {k: _steps_of(self.steps[k]) for k in ("failover", "failback") if k in self.steps},
        }

    def teardown(self) -> None:
        if self.config is not None:
            with contextlib.suppress(Exception):
                stop_stack(self.config)


def _steps_of(record: dict[str, Any]) -> dict[str, Any]:
    """An execution's id and each step's kind, status and seconds (where a switch spends its time)."""
    return {"execution_id": record.get("execution_id"), "status": record.get("status"),
            "steps": [{"name": s["name"], "kind": s["kind"], "status": s["status"],
                       "seconds": round(s["ended"] - s["started"], 3) if s.get("ended") and s.get("started") else None}
                      for s in record.get("steps", [])]}


def _longest_gap_after(acks: list[dict[str, Any]], when: float) -> float | None:
    """The longest time after `when` with no transfer acknowledged (the write outage of the failover)."""
    times = sorted([when] + [a["acked_at"] for a in acks if a.get("acked_at", 0) > when])
    if len(times) < 2:
        return None
    return round(max(b - a for a, b in zip(times, times[1:], strict=False)), 3)


def _first_ack_after(acks_path: Path, when: float, loading: Any, timeout: float) -> float | None:
    """The time of the first acknowledgement after `when` (the write outage ends there)."""
    def first() -> float | None:
        times = [a["acked_at"] for a in read_acks(acks_path) if a.get("acked_at", 0) > when]
        return min(times) if times else None

    try:
        found = poll_until(lambda: first() or (None if loading() else -1.0), timeout=timeout, interval=0.05,
                           what="a transfer acknowledged after the kill")
    except PollTimeout:
        return None
    return found if found > 0 else None  # -1: the load ended with no transfer after the kill


def run_ledger_drill(transfers: int = 3000, concurrency: int = 8, accounts: int = 50, *, timeout: float = 900.0,
                     keep: bool = False, report_dir: Path | None = None, progress: Any | None = None) -> dict[str, Any]:
    """Run the ledger drill (module docstring) in a fresh stack; its report (passed False with `error` when a
    step could not be carried out). The stack directory is kept when the drill failed or keep."""
    if transfers < 30:
        raise RegionflowError("a ledger drill needs at least 30 transfers (the kill comes a third of the way)")
    started = time.time()
    root = Path(tempfile.mkdtemp(prefix="regionflow-drill-ledger-"))
    root.chmod(0o711)  # the PostgreSQL nodes run as the postgres user, who must reach their data
    drill = _LedgerDrill(root, transfers, concurrency, accounts, time.monotonic() + timeout, progress)
    try:
        report = drill.run()
    except Exception as exc:  # a step that could not be carried out ends up in the report, not a traceback
        drill.say(f"drill stopped: {type(exc).__name__}: {exc}")
        report = {"workload": "ledger", "scenario": "kill", "passed": False, "error": f"{type(exc).__name__}: {exc}",
                  "timeline": drill.timeline, "invariants": {}, "violations": []}
    finally:
        drill.teardown()
    report["seconds"] = round(time.time() - started, 3)
    kept = keep or not report["passed"]
    report["stack_dir"] = str(root) if kept else None
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / f"ledger-drill-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(
            json.dumps(report, indent=2, default=str))
    if not kept:
        shutil.rmtree(root, ignore_errors=True)
    return report
