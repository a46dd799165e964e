"""The drill's view of the stack: one typed client per question to a region or the access point, and what
the drill reads off the stack (replication status, jobs, chunks, rejects, outputs, the shared outbox, the
logs) and measures from it (the RPO at the switch)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable
from email.parser import BytesHeaderParser
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx

from regionflow.api.client import ApiClient, ApiError
from regionflow.config import Config, load_secrets
from regionflow.drill.invariants import output_key_for
from regionflow.drill.loadtest import JOBS_LIMIT, Upload
from regionflow.errors import RegionflowError
from regionflow.notify.outbox import delivered_messages

T = TypeVar("T")


class DrillError(RegionflowError):
    """A step of the drill could not be carried out (as opposed to an invariant that failed)."""


def sha256(data: bytes) -> str:
    """The hex sha256 of data (how outputs are compared with the single-region run)."""
    return hashlib.sha256(data).hexdigest()


class StackView:
    """The stack's regions and access point as the drill asks them: a fresh ApiClient per question (the
    sampler thread asks while the main thread does), with the stack's tokens read once."""

    def __init__(self, config: Config):
        self.config = config
        self.secrets = load_secrets(config)
        self.verify = config.tls_verify()

    def client(self, region: str | None = None, *, admin: bool = False, timeout: float = 10.0) -> ApiClient:
        """A client for region (the access point when None); connecting is bounded at 2 s so a dead region
        is noticed quickly whatever the read timeout."""
        base = self.config.region_url(region) if region else self.config.access_point_url
        token = self.secrets.admin_token if admin else self.secrets.api_token
        return ApiClient(base, token, target=region or "access point",
                         timeout=httpx.Timeout(timeout, connect=2.0), verify=self.verify)

    def ask(self, region: str | None, question: Callable[[ApiClient], T], *, admin: bool = False,
            timeout: float = 10.0, doing: str = "") -> T:
        """question(client) for region; DrillError (prefixed with doing, if given) when it was not answered."""
        try:
            with self.client(region, admin=admin, timeout=timeout) as api:
                return question(api)
        except ApiError as exc:
            raise DrillError(f"{doing}: {exc}" if doing else str(exc)) from None

    def try_ask(self, region: str | None, question: Callable[[ApiClient], T], **kwargs: Any) -> T | None:
        """question(client) for region, or None when it was not answered (a region down or switching)."""
        try:
            return self.ask(region, question, **kwargs)
        except (DrillError, ValueError, KeyError):
            return None

    def direction(self, target: str, source: str) -> dict[str, Any] | None:
        """target's replication status for the direction source -> target, or None."""
        rows = self.try_ask(target, lambda api: api.replication())
        return next((d for d in rows if d["source"] == source), None) if rows else None

    def jobs(self, region: str) -> list[dict[str, Any]] | None:
        """Every job region knows, or None when it does not answer."""
        return self.try_ask(region, lambda api: api.jobs(limit=JOBS_LIMIT))

    def deep_healthy(self, region: str) -> bool:
        """Whether region's deep health check (objects, state, control) passes."""
        report = self.try_ask(region, lambda api: api.health_deep())
        return bool(report and report.get("status") == "ok")


# ---------------------------------------------------------------------------------------------------
# What the invariants are checked on
# ---------------------------------------------------------------------------------------------------


def _region_data(api: ApiClient, jobs: list[dict[str, Any]], output_keys: Iterable[str]) -> dict[str, Any]:
    """One region's chunks and reject rows per job and the sha256 of each output key (None: absent).

    A question the region answers with an error counts as empty/absent; a region that stops answering
    altogether stops the drill (ApiError), as the data would be incomplete."""
    entry: dict[str, Any] = {"jobs": jobs, "outputs": {}, "chunks": {}, "rejects": {}}
    for job in jobs:
        job_id = job["job_id"]
        try:
            entry["chunks"][job_id] = api.chunks(job_id)
        except ApiError as exc:
            if exc.unreachable:
                raise
            entry["chunks"][job_id] = []
        try:
            entry["rejects"][job_id] = [r["row_no"] for r in api.all_rejects(job_id)]
        except ApiError as exc:
            if exc.unreachable:
                raise
            entry["rejects"][job_id] = []
    keys = {j["output_key"] for j in jobs if j.get("output_key")} | set(output_keys)
    for key in sorted(keys):
        try:
            entry["outputs"][key] = sha256(api.download(key))
        except ApiError as exc:
            if exc.unreachable:
                raise
            entry["outputs"][key] = None
    return entry


def collect(view: StackView, regions: Iterable[str], uploads: list[Upload], expected: dict[str, Any],
            default_active: str) -> dict[str, Any]:
    """Everything the invariants are checked on, read from every region and the shared outbox (the shape
    is in drill/invariants.py)."""
    submitted = [u for u in uploads if u.submitted]
    output_keys = [output_key_for(u.key) for u in submitted]
    data: dict[str, dict[str, Any]] = {}
    for name in regions:
        jobs = view.ask(name, lambda api: api.jobs(limit=JOBS_LIMIT), doing=f"listing the jobs of {name}")
        data[name] = view.ask(name, partial(_region_data, jobs=jobs, output_keys=output_keys), timeout=30.0,
                              doing=f"reading the jobs of {name}")
    control = view.try_ask(default_active, lambda api: api.control()) or {}
    return {"expected": expected, "authoritative": control.get("active_region", default_active),
            "submitted": [{"key": u.key, "job_id": u.job_id} for u in submitted],
            "regions": data, "notifications": read_outbox(view.config)}


def outbox_dir(config: Config) -> Path:
    """The shared outbox directory of the stack (one .eml per notified job)."""
    notifier = config.notifier
    if notifier and notifier.startswith("outbox://"):
        return Path(notifier[len("outbox://"):])
    return Path(config.data_dir) / "outbox"


def read_outbox(config: Config) -> list[dict[str, str]]:
    """[{"file", "job_id"}] for every message in the shared outbox."""
    out = []
    parser = BytesHeaderParser()
    for path in delivered_messages(outbox_dir(config)):
        with path.open("rb") as fh:
            headers = parser.parse(fh)
        out.append({"file": path.name, "job_id": headers.get("X-Regionflow-Job") or path.stem})
    return out


def logged_chunk_starts(config: Config) -> Counter[str]:
    """Chunk executions started per job, from both regions' logs (which survive a kill, unlike the
    attempts counted in the state a converged region may have replaced)."""
    started: Counter[str] = Counter()
    for log in (Path(config.data_dir) / "logs").glob("*.log"):
        with log.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if '"chunk_started"' not in line:
                    continue
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    if rec.get("msg") == "chunk_started" and rec.get("job_id"):
                        started[rec["job_id"]] += 1
    return started


# ---------------------------------------------------------------------------------------------------
# RPO
# ---------------------------------------------------------------------------------------------------


def rpo_files(failover: dict[str, Any], submitted: list[Upload], standby_jobs: Iterable[str],
              standby: str | None = None) -> dict[str, Any]:
    """Which files submitted before the switch the standby could not process after it: unknown to it after
    reconcile (never replicated), or listed by reconcile as missing their objects; and how many of those
    uploads were acknowledged without the standby's confirmation (sync mode: only those may be at risk).
    Pure."""
    switch_at = float(failover["started_at"])
    before = [u for u in submitted if u.submitted_at is not None and u.submitted_at <= switch_at]
    unconfirmed = sorted(u.job_id or u.key for u in before if not _confirmed_by(u, standby))
    known = set(standby_jobs)
    missing = {m["job_id"] for m in failover.get("missing") or []}
    unknown = {u.job_id for u in before if u.job_id and u.job_id not in known}
    at_risk = sorted(unknown | (missing & {u.job_id for u in before}))
    return {"files": len(at_risk), "jobs": at_risk, "unknown_to_standby": len(unknown),
            "missing_objects": len(missing), "submitted_before_switch": len(before),
            "upload_mode": _mode(before), "unconfirmed_uploads": len(unconfirmed),
            "at_risk_but_confirmed": sorted(set(at_risk) - set(unconfirmed))}


def _confirmed_by(up: Upload, standby: str | None) -> bool:
    """Whether the standby confirmed storing this upload before it was acknowledged (sync mode); an
    upload acknowledged by the standby itself needs no confirmation."""
    if standby is not None and up.region == standby:
        return True
    confirmed = (up.replication or {}).get("confirmed_by") or []
    return standby in confirmed if standby is not None else bool(confirmed)


def _mode(uploads: list[Upload]) -> str | None:
    # (an answer the access point made for a failed forward, from the copy the next region held, has no mode)
    modes = {(u.replication or {}).get("mode") for u in uploads} & {"sync", "async"}
    return modes.pop() if len(modes) == 1 else ("mixed" if modes else None)


def _wait_step(failover: dict[str, Any], primary: str) -> dict[str, Any]:
    step = next((s for s in failover.get("steps", []) if s["kind"] == "wait_replication"), None)
    return ((step or {}).get("output") or {}).get(primary) or {}


def rpo_seconds(view: StackView, primary: str, failover: dict[str, Any],
                samples: list[tuple[float, dict[str, Any]]], fault_at: float | None) -> dict[str, Any]:
    """Age at the switch of the oldest change of the primary's feed the standby had not applied: asked of
    the primary once it is back (its feed, after the standby's checkpoints at the switch); failing that,
    estimated from the last replication status sampled before the fault."""
    wait = _wait_step(failover, primary)
    applied = wait.get("applied_through") or {}
    switch_at = float(failover["started_at"])
    out: dict[str, Any] = {"confirmed": wait.get("confirmed"), "applied_through": applied,
                           "switch_point": wait.get("switch_point"),
                           "unconfirmed_backlog": wait.get("unconfirmed_backlog")}
    oldest: list[float] = []
    pending = 0
    try:
        for kind in ("objects", "state"):
            if kind not in applied:
                raise DrillError("no checkpoint")
            stats = view.ask(primary, partial(ApiClient.feed_stats, since=int(applied[kind])), admin=True)[kind]
            if stats["oldest"] is not None and stats["oldest"] <= switch_at:
                oldest.append(float(stats["oldest"]))
                pending += int(stats["count"])
        out["seconds"] = round(max(0.0, switch_at - min(oldest)), 3) if oldest else 0.0
        out["method"] = "primary's feed after the standby's checkpoints at the switch"
        out["changes_after_checkpoint"] = pending
        return out
    except (DrillError, KeyError, ValueError, TypeError):
        pass  # the primary cannot tell: estimate below
    last = [(t, d) for t, d in samples if t <= (fault_at if fault_at is not None else switch_at)]
    if last:
        t, d = last[-1]
        behind = any(d["backlog"].values())
        out["seconds"] = round(max(d["lag_seconds"].values()) + (switch_at - t), 3) if behind else 0.0
    else:
        out["seconds"] = None
    out["method"] = "last replication status before the fault"
    return out
