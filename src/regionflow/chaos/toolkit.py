"""Chaos Toolkit extension: regionflow's probes and actions (``"module": "regionflow.chaos.toolkit"``).

Every function takes ``config_path``, the stack's regionflow.toml (or its directory). Experiments get it
from a configuration key read from the environment and pass it to each activity::

    "configuration": {"regionflow_config": {"type": "env", "key": "REGIONFLOW_CONFIG"}},
    ... "arguments": {"config_path": "${regionflow_config}", ...}

Functions talk to the stack the way an operator does: the HTTP API of a region or of the access point
(with the tokens of the stack's secrets file), the routing control, the pid files of ``regionflow up``, and
the ``regionflow`` CLI run in the config's directory. Everything stays on loopback and every wait is
bounded. Probes return plain values (booleans for the steady-state hypothesis) and log why they are false;
actions raise when they did not do what they say, so the journal shows a failed activity.

The chaos tooling keeps two small files under ``<data_dir>/chaos/``: ``submitted.jsonl`` (every upload made
by :func:`submit_files`, so the hypothesis also notices an upload that never became a job) and
``reference-<table>.json`` (what :func:`load_reference` loaded).
"""

from __future__ import annotations

import contextlib
import email
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from regionflow.client import ApiError, Client
from regionflow.config import CONFIG_FILE, Config, load_config
from regionflow.errors import RegionflowError

__all__ = [
    "active_region",
    "all_jobs_complete",
    "clear_faults",
    "failback",
    "failover",
    "failover_refused",
    "freeze_region",
    "inject_fault",
    "kill_region",
    "load_reference",
    "no_duplicates",
    "pause_replication",
    "region_healthy",
    "restart_missing",
    "resume_replication",
    "submit_files",
    "thaw_region",
    "wait_faults_cleared",
    "wait_job_status",
    "wait_region_down",
    "wait_replication_drained",
]

log = logging.getLogger("chaostoolkit")

HTTP_TIMEOUT = 10.0
POLL = 0.25
CLI_TIMEOUT = 120.0
REFERENCE_TABLE = "financial_data"
REFERENCE_KEY = "uuid"


class ChaosActionFailed(RegionflowError):
    """A chaos action could not do what it says (the journal records it as a failed activity)."""


# ------------------------------------------------------------------------------------------- helpers


def _config_file(config_path: str | Path) -> Path:
    p = Path(config_path).expanduser()
    return (p / CONFIG_FILE if p.is_dir() else p).absolute()


def _config(config_path: str | Path) -> Config:
    return load_config(_config_file(config_path))


def _chaos_dir(cfg: Config) -> Path:
    d = Path(cfg.data_dir) / "chaos"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _client(cfg: Config, region: str | None = None, *, admin: bool = False,
            timeout: float = HTTP_TIMEOUT) -> Client:
    return Client(cfg, region, admin=admin, timeout=timeout)


def _regionflow_cmd() -> list[str]:
    script = Path(sys.executable).parent / "regionflow"
    return [str(script)] if script.exists() else [sys.executable, "-m", "regionflow.cli"]


def _cli(config_path: str | Path, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    """Run `regionflow ARGS` in the config's directory (bounded by timeout)."""
    path = _config_file(config_path)
    env = {**os.environ, "REGIONFLOW_CONFIG": str(path)}
    try:
        return subprocess.run([*_regionflow_cmd(), *args], cwd=path.parent, env=env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ChaosActionFailed(f"`regionflow {' '.join(args)}` did not finish within {timeout:g}s") from None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _control(cfg: Config) -> tuple[str, int]:
    from regionflow.control import open_control

    state = open_control(cfg.control).get()
    return state.active_region, state.epoch


def _pid(cfg: Config, region: str) -> int:
    cfg.region(region)  # unknown region: ConfigError naming the known ones
    pidfile = Path(cfg.data_dir) / "run" / f"{region}.pid"
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        raise ChaosActionFailed(f"{region} is not running (no pid file at {pidfile})") from None


def _alive(pid: int) -> bool:
    """Whether pid is a live process (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _signal_region(cfg: Config, region: str, sig: signal.Signals) -> int:
    pid = _pid(cfg, region)
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        raise ChaosActionFailed(f"{region} (pid {pid}) is not running") from None
    log.info("sent %s to %s (process group %d)", sig.name, region, pid)
    return pid


def _jobs(cfg: Config, region: str) -> list[dict[str, Any]] | None:
    """Every job a region knows, or None when it cannot be asked."""
    try:
        with _client(cfg, region, timeout=5.0) as c:
            return c.json("GET", "/jobs", params={"limit": 10000})["jobs"]
    except (RegionflowError, KeyError, ValueError) as exc:
        log.debug("jobs of %s: %s", region, exc)
        return None


def _submitted(cfg: Config) -> list[dict[str, Any]]:
    path = Path(cfg.data_dir) / "chaos" / "submitted.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _outbox_dir(cfg: Config) -> Path | None:
    """The stack's outbox directory, or None when notifications go elsewhere (SMTP)."""
    if cfg.notifier is None:
        return Path(cfg.data_dir) / "outbox"
    if cfg.notifier.startswith("outbox://"):
        return Path(cfg.notifier.removeprefix("outbox://"))
    return None


# -------------------------------------------------------------------------------------------- probes


def active_region(config_path: str) -> str:
    """The region the routing control names active now."""
    return _control(_config(config_path))[0]


def region_healthy(config_path: str, region: str) -> bool:
    """True when the region's deep health check (objects, state, control) answers ok within 2 s."""
    cfg = _config(config_path)
    try:
        with _client(cfg, region, timeout=2.0) as c:
            return c.json("GET", "/health/deep").get("status") == "ok"
    except (RegionflowError, ValueError) as exc:  # a probe reports, never raises
        log.info("%s is not healthy: %s", region, exc)
        return False


def all_jobs_complete(config_path: str, timeout: float = 120) -> bool:
    """Wait until every job is COMPLETED in the active region; then True.

    "Every job" is every job any reachable region knows plus every upload made by submit_files, so a
    job that never reached the active region keeps this waiting. False on timeout or as soon as the
    active region reports a job FAILED.
    """
    cfg = _config(config_path)
    deadline = time.monotonic() + float(timeout)
    submitted = {s["job_id"] for s in _submitted(cfg)}
    pending: list[str] = []
    while True:
        try:
            active, _epoch = _control(cfg)
        except RegionflowError as exc:
            active, pending = None, [f"routing control: {exc}"]
        views = _jobs(cfg, active) if active else None
        if views is not None:
            known = set(submitted)
            for name in cfg.region_names:
                if name != active:
                    known |= {j["job_id"] for j in _jobs(cfg, name) or []}
            status = {j["job_id"]: j for j in views}
            failed = [j for j in views if j["status"] == "FAILED"]
            if failed:
                for j in failed:
                    log.error("job %s FAILED in %s: %s", j["job_id"], active, j.get("reason"))
                return False
            pending = sorted(f"{j} ({status[j]['status'] if j in status else f'unknown to {active}'})"
                             for j in known | set(status) if status.get(j, {}).get("status") != "COMPLETED")
            if not pending:
                log.info("all %d job(s) are COMPLETED in %s", len(status), active)
                return True
        elif active:
            pending = [f"active region {active} is not answering"]
        if time.monotonic() > deadline:
            log.error("after %gs, not complete: %s", float(timeout), ", ".join(pending[:10]))
            return False
        time.sleep(POLL)


def _output_digests(cfg: Config, region: str, jobs: list[dict[str, Any]]) -> dict[str, str] | None:
    """sha256 of each completed job's output as stored in region (absent outputs left out)."""
    digests: dict[str, str] = {}
    try:
        with _client(cfg, region, timeout=30.0) as c:
            for j in jobs:
                if j["status"] != "COMPLETED" or not j.get("output_key"):
                    continue
                try:
                    data = c.download(j["output_key"])
                except ApiError as exc:
                    if "HTTP 404" in str(exc):
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
    outbox = _outbox_dir(cfg)
    if outbox is None:
        log.info("notifications go to %s, not an outbox: only the regions' records are checked", cfg.notifier)
        return []
    problems = []
    delivered: Counter[str] = Counter()
    for eml in sorted(outbox.glob("*.eml")) if outbox.is_dir() else []:
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


def no_duplicates(config_path: str) -> bool:
    """True when nothing was done twice or lost its counts, across every reachable region.

    Checks: each completed job has exactly one message in the stack's outbox (``<data_dir>/outbox/*.eml``);
    each reachable region records at most one notification per job; no two jobs share an input key and
    version; every completed job has rows_in == rows_ok + rows_rejected; a job's output is byte-identical
    in every reachable region that holds it (and matches the recorded etag).
    """
    cfg = _config(config_path)
    problems: list[str] = []
    views: dict[str, list[dict[str, Any]]] = {}
    for name in cfg.region_names:
        jobs = _jobs(cfg, name)
        if jobs is None:
            log.info("%s is unreachable: left out of the duplicate check", name)
            continue
        views[name] = jobs
        try:
            with _client(cfg, name, timeout=5.0) as c:
                notes = c.json("GET", "/outbox")["notifications"]
        except (RegionflowError, KeyError, ValueError) as exc:
            problems.append(f"{name}: notifications unreadable: {exc}")
            continue
        problems += [f"{name}: {n} notification records for job {j}"
                     for j, n in Counter(n["job_id"] for n in notes).items() if n > 1]
    if not views:
        log.error("no region is reachable")
        return False
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
    cfg = _config(config_path)
    deadline = time.monotonic() + float(timeout)
    while True:
        try:
            pid = _pid(cfg, region)
        except ChaosActionFailed:
            return True
        if not _alive(pid):
            log.info("%s (pid %d) has exited", region, pid)
            return True
        if time.monotonic() > deadline:
            raise ChaosActionFailed(f"{region} (pid {pid}) is still running after {timeout:g}s")
        time.sleep(POLL)


def wait_job_status(config_path: str, region: str, status: str = "PROCESSING", min_chunks_done: int = 0,
                    timeout: float = 30) -> str:
    """Wait until some job in region is in status (with at least min_chunks_done chunks done); its id."""
    cfg = _config(config_path)
    deadline = time.monotonic() + float(timeout)
    while True:
        for j in _jobs(cfg, region) or []:
            if j["status"] != status:
                continue
            if min_chunks_done:
                with contextlib.suppress(RegionflowError), _client(cfg, region, timeout=5.0) as c:
                    chunks = c.json("GET", f"/jobs/{j['job_id']}/chunks")["chunks"]
                    if sum(ch["status"] == "DONE" for ch in chunks) < min_chunks_done:
                        continue
            log.info("job %s is %s in %s", j["job_id"], status, region)
            return j["job_id"]
        if time.monotonic() > deadline:
            raise ChaosActionFailed(f"no job reached {status} in {region} within {timeout:g}s")
        time.sleep(0.05)


def wait_faults_cleared(config_path: str, region: str, timeout: float = 60) -> bool:
    """Wait until the region reports no active fault (they revert by themselves); True then."""
    cfg = _config(config_path)
    deadline = time.monotonic() + float(timeout)
    while True:
        with contextlib.suppress(RegionflowError), _client(cfg, region, admin=True, timeout=5.0) as c:
            if not c.json("GET", "/admin/faults")["faults"]:
                return True
        if time.monotonic() > deadline:
            raise ChaosActionFailed(f"{region} still has faults after {timeout:g}s")
        time.sleep(POLL)


# ------------------------------------------------------------------------------------------- actions


def load_reference(config_path: str, path: str, table: str = REFERENCE_TABLE, key: str = REFERENCE_KEY) -> dict:
    """Load a reference (enrichment) table through the access point; returns the region's answer."""
    cfg = _config(config_path)
    source = Path(path).expanduser()
    if not source.is_file():
        raise ChaosActionFailed(f"{source}: no such file")
    with _client(cfg, timeout=60.0) as c:
        result = c.load_reference(source, table, key)
    marker = {**result, "sha256": hashlib.sha256(source.read_bytes()).hexdigest(), "path": str(source)}
    (_chaos_dir(cfg) / f"reference-{table}.json").write_text(json.dumps(marker))
    log.info("loaded %s rows into %s (revision %s) in %s", result.get("rows"), table, result.get("revision"),
             result.get("region"))
    return result


def submit_files(config_path: str, count: int, rows: int = 2000, seed: int = 1, prefix: str = "chaos") -> list[str]:
    """Upload count copies of a generated orders file through the access point; returns their job ids.

    The sample (regionflow.workloads.batch.sample.generate, 5% invalid rows) is made in a temporary directory. Its
    reference data is loaded first when the chaos tooling has not loaded the reference table yet (a
    reload would change the enrichment under jobs in flight). Keys are unique per call.
    """
    from regionflow.workloads.batch.sample import generate

    cfg = _config(config_path)
    if count < 1:
        raise ChaosActionFailed("count must be at least 1")
    tag = uuid.uuid4().hex[:6]
    job_ids = []
    with tempfile.TemporaryDirectory(prefix="regionflow-chaos-") as tmp:
        sample = generate(int(rows), Path(tmp), invalid_ratio=0.05, seed=int(seed))
        marker = _chaos_dir(cfg) / f"reference-{REFERENCE_TABLE}.json"
        if not marker.exists():
            load_reference(config_path, str(sample.financial))
        elif json.loads(marker.read_text()).get("sha256") != hashlib.sha256(sample.financial.read_bytes()).hexdigest():
            log.warning("the reference table holds other data than this sample's (rows=%s, seed=%s): most rows "
                        "will be rejected as unknown keys", rows, seed)
        with _client(cfg, timeout=60.0) as c:
            for i in range(int(count)):
                key = f"input/{prefix}-{tag}-{i:03d}.csv"
                answer = c.upload(sample.orders, key)
                job_ids.append(answer["job_id"])
                record = {"job_id": answer["job_id"], "key": key, "version_id": answer["version_id"],
                          "region": answer["region"], "rows": int(rows), "at": time.time()}
                with (_chaos_dir(cfg) / "submitted.jsonl").open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
    log.info("submitted %d file(s) of %d rows: %s", count, rows, ", ".join(job_ids))
    return job_ids


def inject_fault(config_path: str, region: str, kind: str, duration: float,
                 params: dict[str, Any] | None = None) -> dict:
    """Inject a fault into region for duration seconds (it reverts by itself); returns the fault."""
    cfg = _config(config_path)
    cfg.region(region)
    with _client(cfg, region, admin=True) as c:
        fault = c.json("POST", "/admin/faults", json={"kind": kind, "duration": float(duration),
                                                      "params": dict(params or {})})
    log.info("injected %s into %s for %gs %s", kind, region, float(duration), params or "")
    return fault


def clear_faults(config_path: str, region: str) -> dict:
    """Revert every fault of region now. A region that is down has none (faults die with the process)."""
    cfg = _config(config_path)
    cfg.region(region)
    try:
        with _client(cfg, region, admin=True) as c:
            return c.json("DELETE", "/admin/faults")
    except RegionflowError as exc:
        if "not reachable" not in str(exc):
            raise
        log.warning("%s is not reachable; its faults ended with its process", region)
        return {"region": region, "cleared": [], "reachable": False}


def kill_region(config_path: str, region: str, timeout: float = 15) -> int:
    """SIGKILL the region's process group (pid file .regionflow/run/<region>.pid); waits until it is gone."""
    cfg = _config(config_path)
    pid = _signal_region(cfg, region, signal.SIGKILL)
    wait_region_down(config_path, region, timeout)
    return pid


def freeze_region(config_path: str, region: str) -> int:
    """SIGSTOP the region's process group: it keeps its state and its beliefs, and answers nothing."""
    return _signal_region(_config(config_path), region, signal.SIGSTOP)


def thaw_region(config_path: str, region: str) -> int | None:
    """SIGCONT the region's process group (a no-op, returning None, if it is not running)."""
    try:
        return _signal_region(_config(config_path), region, signal.SIGCONT)
    except ChaosActionFailed as exc:
        log.info("thaw %s: %s", region, exc)
        return None


def _missing(cfg: Config) -> list[str]:
    run = Path(cfg.data_dir) / "run"
    missing = []
    for name in [*cfg.region_names, "access-point"]:
        try:
            pid = int((run / f"{name}.pid").read_text().strip())
        except (OSError, ValueError):
            missing.append(name)
            continue
        if not _alive(pid):
            missing.append(name)
    return missing


def restart_missing(config_path: str, timeout: float = 60) -> list[str]:
    """Start the stack's processes that are not running (`regionflow up --detach`); returns their names.

    A process that died but is not reaped yet still counts as running for `regionflow up`; it is retried
    until the process is gone (within timeout).
    """
    cfg = _config(config_path)
    deadline = time.monotonic() + float(timeout)
    missing = _missing(cfg)
    if not missing:
        log.info("every process of the stack is running")
        return []
    while True:
        left = max(deadline - time.monotonic(), 5.0)
        result = _cli(config_path, "up", "--detach", "--timeout", str(left), timeout=left + 30)
        if result.returncode == 0:
            break
        why = _last_line(result.stderr) or _last_line(result.stdout)
        if "already running" not in why or time.monotonic() > deadline:
            raise ChaosActionFailed(f"regionflow up --detach exited {result.returncode}: {why}")
        time.sleep(POLL)  # a dead process not reaped yet
    log.info("restarted %s", ", ".join(missing))
    return missing


def _switch(config_path: str, args: list[str], timeout: float) -> dict:
    result = _cli(config_path, *args, "--yes", "--json", "--timeout", str(float(timeout)),
                  timeout=float(timeout) + 30)
    try:
        record = json.loads(result.stdout) if result.stdout.strip() else None
    except ValueError:
        record = None
    if result.returncode != 0 or not record or record.get("status") != "SUCCEEDED":
        why = (record or {}).get("error") or _last_line(result.stderr) or f"exit status {result.returncode}"
        failed = [s for s in (record or {}).get("steps", []) if s.get("status") == "FAILED"]
        if failed:
            why = f"step {failed[0]['name']!r}: {failed[0].get('error') or why}"
        raise ChaosActionFailed(f"regionflow {args[0]} did not succeed: {why}")
    log.info("%s succeeded: %s active, RTO %ss", args[0], record.get("target"), record.get("rto_seconds"))
    return record


def failover(config_path: str, to: str, timeout: float = 120) -> dict:
    """Fail over to region `to` (`regionflow failover --to TO --yes --json`); the execution record."""
    _config(config_path).region(to)
    return _switch(config_path, ["failover", "--to", to], timeout)


def failback(config_path: str, timeout: float = 120) -> dict:
    """Fail back to the primary region (`regionflow failback --yes --json`); the execution record."""
    return _switch(config_path, ["failback"], timeout)


def failover_refused(config_path: str, to: str, timeout: float = 60) -> dict:
    """Attempt a failover that must fail cleanly: raises if it succeeded or moved the routing control.

    Returns what was observed: the error, the failed step, and the (unchanged) active region and epoch.
    """
    cfg = _config(config_path)
    cfg.region(to)
    before = _control(cfg)
    try:
        record = _switch(config_path, ["failover", "--to", to], timeout)
    except ChaosActionFailed as exc:
        after = _control(cfg)
        if after != before:
            raise ChaosActionFailed(f"the failover failed ({exc}) but the routing control moved from "
                                    f"{before} to {after}") from None
        log.info("failover to %s was refused cleanly: %s", to, exc)
        return {"refused": True, "error": str(exc), "active_region": after[0], "epoch": after[1]}
    raise ChaosActionFailed(f"the failover to {to} succeeded (execution {record.get('execution_id')}, epoch now "
                            f"{_control(cfg)[1]}); it was expected to be refused")


def _replication(config_path: str, action: str, source: str, target: str, kind: str) -> dict:
    cfg = _config(config_path)
    cfg.region(source)
    cfg.region(target)
    with _client(cfg, target, admin=True) as c:
        result = c.json("POST", f"/replication/{source}/{action}", params={"kind": kind})
    log.info("replication %s -> %s (%s): %s", source, target, kind, action)
    return result


def pause_replication(config_path: str, source: str, target: str, kind: str = "all") -> dict:
    """Stop applying source's changes in target (kind: all, objects or state); the direction's status."""
    return _replication(config_path, "pause", source, target, kind)


def resume_replication(config_path: str, source: str, target: str, kind: str = "all") -> dict:
    """Resume applying source's changes in target; the direction's status."""
    return _replication(config_path, "resume", source, target, kind)


def wait_replication_drained(config_path: str, timeout: float = 60) -> dict:
    """Wait until every direction between running regions has no backlog and is not paused.

    Returns each direction's status; raises on timeout naming what is left. A region whose process is
    not running (killed) is left out, as source and as target.
    """
    cfg = _config(config_path)
    deadline = time.monotonic() + float(timeout)
    started = time.time()
    while True:
        left: list[str] = []
        directions: dict[str, dict] = {}
        running = {r for r in cfg.region_names if _running(cfg, r)}
        for target in sorted(running):
            try:
                with _client(cfg, target, timeout=5.0) as c:
                    rows = c.json("GET", "/replication")["directions"]
            except RegionflowError as exc:
                left.append(f"{target}: {exc}")
                continue
            for d in rows:
                if d["source"] not in running:
                    continue
                name = f"{d['source']} -> {d['target']}"
                directions[name] = d
                if d["paused"] or not d["reachable"] or any(d["backlog"].values()) or d["updated_at"] < started:
                    left.append(f"{name}: paused {d['paused_kinds']}, backlog {d['backlog']}, "
                                f"reachable {d['reachable']}")
        if not left:
            log.info("replication drained: %s", ", ".join(directions) or "no running pair")
            return directions
        if time.monotonic() > deadline:
            raise ChaosActionFailed(f"replication not drained after {timeout:g}s: {'; '.join(left)}")
        time.sleep(POLL)


def _running(cfg: Config, region: str) -> bool:
    try:
        return _alive(_pid(cfg, region))
    except ChaosActionFailed:
        return False
