"""Chaos Toolkit probes for regionflow (``"module": "regionflow.chaos.probes"``): what the steady-state
hypothesis and the waits of an experiment observe. Actions are in regionflow.chaos.actions.

Every function takes ``config_path``, the stack's regionflow.toml (or its directory). Experiments get it
from a configuration key read from the environment and pass it to each activity::

    "configuration": {"regionflow_config": {"type": "env", "key": "REGIONFLOW_CONFIG"}},
    ... "arguments": {"config_path": "${regionflow_config}", ...}

Probes talk to the stack the way an operator does: the HTTP API of a region (through ApiClient, with the
tokens of the stack's secrets file), the routing control and the pid files of ``regionflow up``. Everything
stays on loopback and every wait is bounded. The hypothesis probes return plain booleans and log why they
are false; the ``wait_*`` probes raise ChaosActionFailed on timeout, so the journal shows a failed activity.

The helpers below (config, clients, job listings, the chaos files under ``<data_dir>/chaos/``) are shared
with the actions.
"""

from __future__ import annotations

import email
import hashlib
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from regionflow.api.client import ApiClient, ApiError
from regionflow.config import CONFIG_FILE, Config, load_config
from regionflow.errors import RegionflowError
from regionflow.notify.outbox import delivered_messages
from regionflow.polling import PollTimeout, poll_until
from regionflow.region.processes import NotRunning, is_running, wait_exited

__all__ = [
    "active_region",
    "all_jobs_complete",
    "no_duplicates",
    "region_healthy",
    "wait_faults_cleared",
    "wait_job_status",
    "wait_region_down",
    "wait_replication_drained",
]

log = logging.getLogger("chaostoolkit")

HTTP_TIMEOUT = 10.0
POLL = 0.25
JOBS_LIMIT = 10000  # the most a region lists in one answer


class ChaosActionFailed(RegionflowError):
    """A chaos activity could not do what it says (the journal records it as a failed activity)."""


# ------------------------------------------------------------------------------- helpers (shared)


def config_file(config_path: str | Path) -> Path:
    """The absolute regionflow.toml named by config_path (the file or its directory)."""
    p = Path(config_path).expanduser()
    return (p / CONFIG_FILE if p.is_dir() else p).absolute()


def stack_config(config_path: str | Path) -> Config:
    """The stack's topology."""
    return load_config(config_file(config_path))


def chaos_dir(cfg: Config) -> Path:
    """``<data_dir>/chaos/``, where the chaos tooling records its uploads and reference loads."""
    d = Path(cfg.data_dir) / "chaos"
    d.mkdir(parents=True, exist_ok=True)
    return d


def api(cfg: Config, region: str | None = None, *, admin: bool = False, timeout: float = HTTP_TIMEOUT) -> ApiClient:
    """A client for region (the access point when None) with the stack's api or admin token."""
    return ApiClient.for_config(cfg, region, admin=admin, timeout=timeout)


def control(cfg: Config) -> tuple[str, int]:
    """(active region, epoch) read from the routing control itself, not from a region's belief."""
    from regionflow.control import open_control

    state = open_control(cfg.control).get()
    return state.active_region, state.epoch


def jobs_of(cfg: Config, region: str) -> list[dict[str, Any]] | None:
    """Every job a region knows, or None when it cannot be asked."""
    try:
        with api(cfg, region, timeout=5.0) as c:
            return c.jobs(limit=JOBS_LIMIT)
    except (RegionflowError, KeyError, ValueError) as exc:
        log.debug("jobs of %s: %s", region, exc)
        return None


def submitted_uploads(cfg: Config) -> list[dict[str, Any]]:
    """Every upload recorded by submit_files (``<data_dir>/chaos/submitted.jsonl``)."""
    path = Path(cfg.data_dir) / "chaos" / "submitted.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def outbox_dir(cfg: Config) -> Path | None:
    """The stack's outbox directory, or None when notifications go elsewhere (SMTP)."""
    if cfg.notifier is None:
        return Path(cfg.data_dir) / "outbox"
    if cfg.notifier.startswith("outbox://"):
        return Path(cfg.notifier.removeprefix("outbox://"))
    return None


# -------------------------------------------------------------------------------------------- probes


def active_region(config_path: str) -> str:
    """The region the routing control names active now."""
    return control(stack_config(config_path))[0]


def region_healthy(config_path: str, region: str) -> bool:
    """True when the region's deep health check (objects, state, control) answers ok within 2 s."""
    cfg = stack_config(config_path)
    try:
        with api(cfg, region, timeout=2.0) as c:
            report = c.health_deep()
    except (RegionflowError, ValueError) as exc:  # a probe reports, never raises
        log.info("%s is not healthy: %s", region, exc)
        return False
    if report.get("status") != "ok":
        log.info("%s is not healthy: %s", region, report.get("checks"))
        return False
    return True


def all_jobs_complete(config_path: str, timeout: float = 120) -> bool:
    """Wait until every job is COMPLETED in the active region; then True.

    "Every job" is every job any reachable region knows plus every upload made by submit_files, so a
    job that never reached the active region keeps this waiting. False on timeout or as soon as the
    active region reports a job FAILED.
    """
    cfg = stack_config(config_path)
    submitted = {s["job_id"] for s in submitted_uploads(cfg)}
    pending: list[str] = []

    def verdict() -> str | None:
        """"completed" or "failed" once decided; None to ask again."""
        nonlocal pending
        try:
            active: str | None = control(cfg)[0]
        except RegionflowError as exc:
            active, pending = None, [f"routing control: {exc}"]
        views = jobs_of(cfg, active) if active else None
        if views is None:
            if active:
                pending = [f"active region {active} is not answering"]
            return None
        known = set(submitted)
        for name in cfg.region_names:
            if name != active:
                known |= {j["job_id"] for j in jobs_of(cfg, name) or []}
        status = {j["job_id"]: j for j in views}
        failed = [j for j in views if j["status"] == "FAILED"]
        if failed:
            for j in failed:
                log.error("job %s FAILED in %s: %s", j["job_id"], active, j.get("reason"))
            return "failed"
        pending = sorted(f"{j} ({status[j]['status'] if j in status else f'unknown to {active}'})"
                         for j in known | set(status) if status.get(j, {}).get("status") != "COMPLETED")
        if pending:
            return None
        log.info("all %d job(s) are COMPLETED in %s", len(status), active)
        return "completed"

    try:
        return poll_until(verdict, timeout=float(timeout), interval=POLL, what="every job to complete") == "completed"
    except PollTimeout:
        log.error("after %gs, not complete: %s", float(timeout), ", ".join(pending[:10]))
        return False


def _output_digests(cfg: Config, region: str, jobs: list[dict[str, Any]]) -> dict[str, str] | None:
    """sha256 of each completed job's output as stored in region (absent outputs left out)."""
    digests: dict[str, str] = {}
    try:
        with api(cfg, region, timeout=30.0) as c:
            for j in jobs:
                if j["status"] != "COMPLETED" or not j.get("output_key"):
                    continue
                try:
                    data = c.download(j["output_key"])
                except ApiError as exc:
                    if exc.not_found:
                        continue  # not replicated here (yet)
                    raise
                digests[j["job_id"]] = hashlib.sha256(data).hexdigest()
    except RegionflowError as exc:  # an unreachable region is skipped, as the probe promises
        log.info("outputs in %s not compared: %s", region, exc)
        return None
    return digests


def _outbox_problems(cfg: Config, completed: set[str], known: set[str] | None) -> list[str]:
    """Problems with the outbox: a completed job without exactly one message, a message for a job no
    region knows (only checked when known is given, i.e. every region answered)."""
    outbox = outbox_dir(cfg)
    if outbox is None:
        log.info("notifications go to %s, not an outbox: only the regions' records are checked", cfg.notifier)
        return []
    problems = []
    delivered: Counter[str] = Counter()
    for eml in delivered_messages(outbox):
        msg = email.message_from_bytes(eml.read_bytes())
        job_id = msg["X-Regionflow-Job"] or eml.stem
        if job_id != eml.stem:
            problems.append(f"outbox message {eml.name} is for job {job_id}")
        delivered[job_id] += 1
    for job_id in sorted(completed):
        if delivered[job_id] != 1:
            problems.append(f"job {job_id}: {delivered[job_id]} notification(s) in the outbox, expected 1")
    if known is not None:
        problems += [f"outbox notification for unknown job {j}" for j in sorted(set(delivered) - known)]
    return problems


def _record_problems(views: dict[str, list[dict[str, Any]]]) -> tuple[list[str], set[str], set[str]]:
    """Problems in the regions' job records (two jobs for one input version, unbalanced row counts); also
    every known job id and the completed ones."""
    problems: list[str] = []
    known: set[str] = set()
    completed: set[str] = set()
    by_input: dict[tuple[str, str], set[str]] = {}
    for name, jobs in views.items():
        for j in jobs:
            known.add(j["job_id"])
            by_input.setdefault((j["input_key"], j["version_id"]), set()).add(j["job_id"])
            if j["status"] == "COMPLETED":
                completed.add(j["job_id"])
                if j["rows_in"] is None or j["rows_in"] != (j["rows_ok"] or 0) + (j["rows_rejected"] or 0):
                    problems.append(f"{name}: job {j['job_id']} rows_in {j['rows_in']} != ok {j['rows_ok']} + "
                                    f"rejected {j['rows_rejected']}")
    problems += [f"input {key} version {version} has {len(ids)} jobs: {', '.join(sorted(ids))}"
                 for (key, version), ids in by_input.items() if len(ids) > 1]
    return problems, known, completed


def no_duplicates(config_path: str) -> bool:
    """True when nothing was done twice or lost its counts, across every reachable region.

    Checks: each completed job has exactly one message in the stack's outbox (``<data_dir>/outbox/*.eml``);
    each reachable region records at most one notification per job; no two jobs share an input key and
    version; every completed job has rows_in == rows_ok + rows_rejected; a job's output is byte-identical
    in every reachable region that holds it (and matches the recorded etag).
    """
    cfg = stack_config(config_path)
    problems: list[str] = []
    views: dict[str, list[dict[str, Any]]] = {}
    for name in cfg.region_names:
        jobs = jobs_of(cfg, name)
        if jobs is None:
            log.info("%s is unreachable: left out of the duplicate check", name)
            continue
        views[name] = jobs
        try:
            with api(cfg, name, timeout=5.0) as c:
                notes = c.outbox()
        except (RegionflowError, KeyError, ValueError) as exc:
            problems.append(f"{name}: notifications unreadable: {exc}")
            continue
        problems += [f"{name}: {n} notification records for job {j}"
                     for j, n in Counter(n["job_id"] for n in notes).items() if n > 1]
    if not views:
        log.error("no region is reachable")
        return False
    found, known, completed = _record_problems(views)
    problems += found
    problems += _outbox_problems(cfg, completed, known if len(views) == len(cfg.regions) else None)
    etags = {j["job_id"]: j.get("output_etag") for jobs in views.values() for j in jobs
             if j["status"] == "COMPLETED"}
    outputs: dict[str, dict[str, str]] = {}
    for name, jobs in views.items():
        for job_id, digest in (_output_digests(cfg, name, jobs) or {}).items():
            outputs.setdefault(job_id, {})[name] = digest
    for job_id, per_region in outputs.items():
        if len(set(per_region.values())) > 1:
            problems.append(f"job {job_id}: outputs differ between regions: {per_region}")
        elif etags.get(job_id) and etags[job_id] not in per_region.values():
            problems.append(f"job {job_id}: output sha256 {next(iter(per_region.values()))} != recorded etag "
                            f"{etags[job_id]}")
    for p in problems:
        log.error("duplicate check: %s", p)
    if not problems:
        log.info("no duplicates: %d job(s), %d completed, %d output(s) compared across %s", len(known),
                 len(completed), sum(len(v) for v in outputs.values()), ", ".join(views))
    return not problems


def wait_region_down(config_path: str, region: str, timeout: float = 60) -> bool:
    """Wait until the region's process has exited (e.g. at a crash point); True when it has."""
    cfg = stack_config(config_path)
    cfg.region(region)  # unknown region: ConfigError naming the known ones
    try:
        wait_exited(cfg, region, float(timeout), interval=POLL)
    except NotRunning:  # the pid file went away while the timeout was being reported: it is down
        pass
    except RegionflowError as exc:
        raise ChaosActionFailed(str(exc)) from None
    log.info("%s has exited", region)
    return True


def wait_job_status(config_path: str, region: str, status: str = "PROCESSING", min_chunks_done: int = 0,
                    timeout: float = 30) -> str:
    """Wait until some job in region is in status (with at least min_chunks_done chunks done); its id."""
    cfg = stack_config(config_path)

    def find() -> str | None:
        for j in jobs_of(cfg, region) or []:
            if j["status"] != status:
                continue
            if min_chunks_done:
                try:
                    with api(cfg, region, timeout=5.0) as c:
                        chunks = c.chunks(j["job_id"])
                except RegionflowError:
                    chunks = None  # not answering now: the job still counts, as before the chunk check
                if chunks is not None and sum(ch["status"] == "DONE" for ch in chunks) < min_chunks_done:
                    continue
            log.info("job %s is %s in %s", j["job_id"], status, region)
            return str(j["job_id"])
        return None

    try:
        return poll_until(find, timeout=float(timeout), interval=0.05, what=f"a job {status} in {region}")
    except PollTimeout:
        raise ChaosActionFailed(f"no job reached {status} in {region} within {timeout:g}s") from None


def wait_faults_cleared(config_path: str, region: str, timeout: float = 60) -> bool:
    """Wait until the region reports no active fault (they revert by themselves); True then."""
    cfg = stack_config(config_path)

    def cleared() -> bool:
        try:
            with api(cfg, region, admin=True, timeout=5.0) as c:
                return not c.faults()
        except RegionflowError:
            return False

    try:
        return poll_until(cleared, timeout=float(timeout), interval=POLL, what=f"the faults of {region} to clear")
    except PollTimeout:
        raise ChaosActionFailed(f"{region} still has faults after {timeout:g}s") from None


def wait_replication_drained(config_path: str, timeout: float = 60) -> dict:
    """Wait until every direction between running regions has no backlog and is not paused.

    Returns each direction's status; raises on timeout naming what is left. A region whose process is
    not running (killed) is left out, as source and as target.
    """
    cfg = stack_config(config_path)
    started = time.time()
    left: list[str] = []

    def drained() -> tuple[dict[str, dict]] | None:
        nonlocal left
        left = []
        directions: dict[str, dict] = {}
        running = {r for r in cfg.region_names if is_running(cfg, r)}
        for target in sorted(running):
            try:
                with api(cfg, target, timeout=5.0) as c:
                    rows = c.replication()
            except RegionflowError as exc:
                left.append(f"{target}: {exc}")
                continue
            for d in rows:
                if d["source"] not in running:
                    continue
                name = f"{d['source']} -> {d['target']}"
                directions[name] = d
                # updated_at before the call started: a status from before a pause/resume, not proof
                if d["paused"] or not d["reachable"] or any(d["backlog"].values()) or d["updated_at"] < started:
                    left.append(f"{name}: paused {d['paused_kinds']}, backlog {d['backlog']}, "
                                f"reachable {d['reachable']}")
        # a 1-tuple, so "drained with no running pair" ({}) still ends the wait
        return None if left else (directions,)

    try:
        (directions,) = poll_until(drained, timeout=float(timeout), interval=POLL, what="replication to drain")
    except PollTimeout:
        raise ChaosActionFailed(f"replication not drained after {timeout:g}s: {'; '.join(left)}") from None
    log.info("replication drained: %s", ", ".join(directions) or "no running pair")
    return directions
