"""Chaos Toolkit actions for regionflow (``"module": "regionflow.chaos.actions"``): what an experiment does
to the stack. Probes (what it observes) are in regionflow.chaos.probes, whose helpers these share.

Every function takes ``config_path``, the stack's regionflow.toml (or its directory), like the probes.
Actions act the way an operator does: the HTTP API of a region or of the access point (through ApiClient),
the stack's processes through region/processes.py (the code `regionflow up` runs), and the ``regionflow``
CLI run in the config's directory for a region switch. They raise when they did not do what they say, so
the journal shows a failed activity.

The chaos tooling keeps two small files under ``<data_dir>/chaos/``: ``submitted.jsonl`` (every upload made
by :func:`submit_files`, so the hypothesis also notices an upload that never became a job) and
``reference-<table>.json`` (what :func:`load_reference` loaded).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from regionflow.api.client import ApiError
from regionflow.chaos.probes import (
    ChaosActionFailed,
    api,
    chaos_dir,
    config_file,
    control,
    log,
    stack_config,
    wait_region_down,
)
from regionflow.config import Config
from regionflow.region import processes

__all__ = [
    "clear_faults",
    "failback",
    "failover",
    "failover_refused",
    "freeze_region",
    "inject_fault",
    "kill_region",
    "load_reference",
    "pause_replication",
    "restart_missing",
    "resume_replication",
    "submit_files",
    "thaw_region",
]

CLI_TIMEOUT = 120.0
REFERENCE_TABLE = "financial_data"
REFERENCE_KEY = "uuid"


# ------------------------------------------------------------------------------------------- helpers


def _regionflow_cmd() -> list[str]:
    script = Path(sys.executable).parent / "regionflow"
    return [str(script)] if script.exists() else [sys.executable, "-m", "regionflow.cli"]


def _cli(config_path: str | Path, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    """Run `regionflow ARGS` in the config's directory (bounded by timeout)."""
    path = config_file(config_path)
    env = {**os.environ, "REGIONFLOW_CONFIG": str(path)}
    try:
        return subprocess.run([*_regionflow_cmd(), *args], cwd=path.parent, env=env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ChaosActionFailed(f"`regionflow {' '.join(args)}` did not finish within {timeout:g}s") from None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _signal_region(cfg: Config, region: str, sig: signal.Signals) -> int:
    cfg.region(region)  # unknown region: ConfigError naming the known ones
    try:
        pid = processes.signal_process(cfg, region, sig)
    except processes.NotRunning as exc:
        raise ChaosActionFailed(str(exc)) from None
    log.info("sent %s to %s (process group %d)", sig.name, region, pid)
    return pid


# ------------------------------------------------------------------------------------------- actions


def load_reference(config_path: str, path: str, table: str = REFERENCE_TABLE, key: str = REFERENCE_KEY) -> dict:
    """Load a reference (enrichment) table through the access point; returns the region's answer."""
    cfg = stack_config(config_path)
    source = Path(path).expanduser()
    if not source.is_file():
        raise ChaosActionFailed(f"{source}: no such file")
    with api(cfg, timeout=60.0) as c:
        result = c.load_reference(table, source, key)
    marker = {**result, "sha256": hashlib.sha256(source.read_bytes()).hexdigest(), "path": str(source)}
    (chaos_dir(cfg) / f"reference-{table}.json").write_text(json.dumps(marker))
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

    cfg = stack_config(config_path)
    if count < 1:
        raise ChaosActionFailed("count must be at least 1")
    tag = uuid.uuid4().hex[:6]
    job_ids = []
    with tempfile.TemporaryDirectory(prefix="regionflow-chaos-") as tmp:
        sample = generate(int(rows), Path(tmp), invalid_ratio=0.05, seed=int(seed))
        marker = chaos_dir(cfg) / f"reference-{REFERENCE_TABLE}.json"
        if not marker.exists():
            load_reference(config_path, str(sample.financial))
        elif json.loads(marker.read_text()).get("sha256") != hashlib.sha256(sample.financial.read_bytes()).hexdigest():
            log.warning("the reference table holds other data than this sample's (rows=%s, seed=%s): most rows "
                        "will be rejected as unknown keys", rows, seed)
        with api(cfg, timeout=60.0) as c:
            for i in range(int(count)):
                key = f"input/{prefix}-{tag}-{i:03d}.csv"
                answer = c.upload(key, sample.orders)
                job_ids.append(answer["job_id"])
                record = {"job_id": answer["job_id"], "key": key, "version_id": answer["version_id"],
                          "region": answer["region"], "rows": int(rows), "at": time.time()}
                with (chaos_dir(cfg) / "submitted.jsonl").open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
    log.info("submitted %d file(s) of %d rows: %s", count, rows, ", ".join(job_ids))
    return job_ids


def inject_fault(config_path: str, region: str, kind: str, duration: float,
                 params: dict[str, Any] | None = None) -> dict:
    """Inject a fault into region for duration seconds (it reverts by itself); returns the fault."""
    cfg = stack_config(config_path)
    cfg.region(region)
    with api(cfg, region, admin=True) as c:
        fault = c.inject_fault(kind, float(duration), params)
    log.info("injected %s into %s for %gs %s", kind, region, float(duration), params or "")
    return fault


def clear_faults(config_path: str, region: str) -> dict:
    """Revert every fault of region now. A region that is down has none (faults die with the process)."""
    cfg = stack_config(config_path)
    cfg.region(region)
    try:
        with api(cfg, region, admin=True) as c:
            return {"region": region, "cleared": c.clear_faults()}
    except ApiError as exc:
        if not exc.unreachable:
            raise
        log.warning("%s is not reachable; its faults ended with its process", region)
        return {"region": region, "cleared": [], "reachable": False}


def kill_region(config_path: str, region: str, timeout: float = 15) -> int:
    """SIGKILL the region's process group (pid file .regionflow/run/<region>.pid) and, on a servers topology,
    the region's own servers (SeaweedFS, PostgreSQL), as a regional outage would; waits until it is gone."""
    from regionflow.region.stack import kill_region as kill_with_servers

    cfg = stack_config(config_path)
    cfg.region(region)  # unknown region: ConfigError naming the known ones
    try:
        pid = processes.read_pid(cfg, region)
        killed = kill_with_servers(cfg, region, timeout=float(timeout))
    except processes.NotRunning as exc:
        raise ChaosActionFailed(str(exc)) from None
    log.info("sent SIGKILL to %s (process group %d)", ", ".join(killed), pid)
    wait_region_down(config_path, region, timeout)
    return pid


def freeze_region(config_path: str, region: str) -> int:
    """SIGSTOP the region's process group: it keeps its state and its beliefs, and answers nothing."""
    return _signal_region(stack_config(config_path), region, signal.SIGSTOP)


def thaw_region(config_path: str, region: str) -> int | None:
    """SIGCONT the region's process group (a no-op, returning None, if it is not running)."""
    try:
        return _signal_region(stack_config(config_path), region, signal.SIGCONT)
    except ChaosActionFailed as exc:
        log.info("thaw %s: %s", region, exc)
        return None


def restart_missing(config_path: str, timeout: float = 60) -> list[str]:
    """Start the stack's processes that are not running (what `regionflow up --detach` does); returns their
    names once they are healthy. A process that died but is not reaped yet counts as not running."""
    from regionflow.region.stack import server_status, start_stack

    cfg = stack_config(config_path)
    missing = processes.missing(cfg) + [s["name"] for s in server_status(cfg) if not s.get("running", True)]
    if not missing:
        log.info("every process of the stack is running")
        return []
    started = start_stack(config_file(config_path), cfg, timeout=float(timeout))
    log.info("restarted %s", ", ".join(p.name for p in started))
    return [p.name for p in started]


def _switch(config_path: str, args: list[str], timeout: float) -> dict:
    """Run `regionflow failover|failback ... --yes --json`: the same command an operator runs."""
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
    stack_config(config_path).region(to)
    return _switch(config_path, ["failover", "--to", to], timeout)


def failback(config_path: str, timeout: float = 120) -> dict:
    """Fail back to the primary region (`regionflow failback --yes --json`); the execution record."""
    return _switch(config_path, ["failback"], timeout)


def failover_refused(config_path: str, to: str, timeout: float = 60) -> dict:
    """Attempt a failover that must fail cleanly: raises if it succeeded or moved the routing control.

    Returns what was observed: the error, the failed step, and the (unchanged) active region and epoch.
    """
    cfg = stack_config(config_path)
    cfg.region(to)
    before = control(cfg)
    try:
        record = _switch(config_path, ["failover", "--to", to], timeout)
    except ChaosActionFailed as exc:
        after = control(cfg)
        if after != before:
            raise ChaosActionFailed(f"the failover failed ({exc}) but the routing control moved from "
                                    f"{before} to {after}") from None
        log.info("failover to %s was refused cleanly: %s", to, exc)
        return {"refused": True, "error": str(exc), "active_region": after[0], "epoch": after[1]}
    raise ChaosActionFailed(f"the failover to {to} succeeded (execution {record.get('execution_id')}, epoch now "
                            f"{control(cfg)[1]}); it was expected to be refused")


def _replication(config_path: str, action: str, source: str, target: str, kind: str) -> dict:
    cfg = stack_config(config_path)
    cfg.region(source)
    cfg.region(target)
    # the pause flag lives in the target: it is the target's replicator that stops applying source's feed
    with api(cfg, target, admin=True) as c:
        result = c.replication_action(source, action, kind)
    log.info("replication %s -> %s (%s): %s", source, target, kind, action)
    return result


def pause_replication(config_path: str, source: str, target: str, kind: str = "all") -> dict:
    """Stop applying source's changes in target (kind: all, objects or state); the direction's status."""
    return _replication(config_path, "pause", source, target, kind)


def resume_replication(config_path: str, source: str, target: str, kind: str = "all") -> dict:
    """Resume applying source's changes in target; the direction's status."""
    return _replication(config_path, "resume", source, target, kind)
