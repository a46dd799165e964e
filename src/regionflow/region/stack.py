"""Starting, stopping and inspecting a local stack (one process per region + the access point).

The processes themselves (pid files, signals, start, stop, health waits) are region/processes.py; this
module is what `regionflow up`, `down` and `status` call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from regionflow.api.client import ApiClient, ApiError
from regionflow.config import Config, load_secrets
from regionflow.control import open_control
from regionflow.errors import RegionflowError
from regionflow.region.processes import (
    Proc,
    check_tls,
    process_names,
    running,
    start_process,
    stop_all,
    wait_healthy,
)

__all__ = ["Proc", "stack_status", "start_stack", "stop_stack"]

STATUS_TIMEOUT = 1.5  # `status` redraws every second in `up`: a region that does not answer is shown as down
JOBS_LIMIT = 10000


def start_stack(config_path: Path, config: Config, timeout: float = 60.0) -> list[Proc]:
    """Start every region and the access point that is not already running (so `up` after a crash
    restarts just the missing ones); return the started ones once all are healthy."""
    already = running(config)
    to_start = [name for name in process_names(config) if name not in already]
    if not to_start:
        raise RegionflowError(f"the stack is already running ({', '.join(already)}); run `regionflow down` first")
    secrets = load_secrets(config)  # fail early, before starting anything
    for name in to_start:
        check_tls(config, name)
    procs = [start_process(config_path, config, name) for name in to_start]
    try:
        wait_healthy(procs, secrets.api_token, timeout, verify=config.tls_verify())
    except BaseException:
        if not already:  # a fresh start that failed leaves nothing behind; a restart keeps the survivors
            stop_stack(config)
        raise
    return procs


def stop_stack(config: Config, timeout: float = 15.0) -> list[str]:
    """SIGTERM every process of the stack (SIGCONT first, in case one is stopped), SIGKILL stragglers;
    the names of those that were running."""
    return stop_all(config, timeout)


def _region_status(api: ApiClient, entry: dict[str, Any], replication: list[dict[str, Any]]) -> None:
    """Fill entry from one region's API; stops at the first question it does not answer."""
    try:
        deep = api.health_deep()
        entry["healthy"] = True
        entry["deep"] = deep.get("status")
        entry["faults"] = [f["kind"] for f in deep.get("faults", [])]
        counts: dict[str, int] = {}
        for j in api.jobs(limit=JOBS_LIMIT):
            counts[j["status"]] = counts.get(j["status"], 0) + 1
        entry["jobs"] = counts
        report = api.replication_report()
        replication.extend(report["directions"])
        entry["uploads"] = report.get("uploads")
        evaluation = api.evaluation()
        entry["plan_evaluation"] = {k: evaluation.get(k) for k in ("status", "evaluated_at")}
    except (ApiError, ValueError, KeyError):
        pass


def stack_status(config: Config) -> dict:
    """Health of each region, the routing control, and replication per direction."""
    token = load_secrets(config).api_token
    verify = config.tls_verify()
    out: dict = {"regions": {}, "replication": [], "control": None, "processes": running(config)}
    try:
        c = open_control(config.control).get()
        out["control"] = {"active_region": c.active_region, "epoch": c.epoch}
    except RegionflowError as exc:
        out["control"] = {"error": str(exc)}
    for r in config.regions:
        url = config.region_url(r.name)
        entry: dict = {"url": url, "healthy": False, "deep": None, "jobs": None}
        with ApiClient(url, token, target=r.name, timeout=STATUS_TIMEOUT, verify=verify) as api:
            _region_status(api, entry, out["replication"])
        entry["active"] = bool(out["control"] and out["control"].get("active_region") == r.name)
        out["regions"][r.name] = entry
    with ApiClient(config.access_point_url, token, target="access point", timeout=STATUS_TIMEOUT,
                   verify=verify) as api:
        try:
            api.health()
            healthy = True
        except ApiError:
            healthy = False
    out["access_point"] = {"url": config.access_point_url, "healthy": healthy}
    return out
