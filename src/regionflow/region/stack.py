"""Starting, stopping and inspecting a local stack (one process per region + the access point, and on a
servers topology the servers they use: etcd, then each region's PostgreSQL and SeaweedFS).

The processes themselves (pid files, signals, start, stop, health waits) are region/processes.py and
servers/runner.py; this module is what `regionflow up`, `down` and `status` call.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, TypeVar

from regionflow.api.client import ApiClient, ApiError
from regionflow.config import Config, load_secrets
from regionflow.control import open_control
from regionflow.errors import RegionflowError
from regionflow.region.processes import (
    Proc,
    check_tls,
    log_dir,
    process_names,
    run_dir,
    running,
    start_process,
    stop_all,
    wait_healthy,
)
from regionflow.servers.base import ManagedServer
from regionflow.servers.runner import (
    ServerProc,
    read_pid,
    server_alive,
    start_server,
    stop_server,
    wait_servers_healthy,
)
from regionflow.servers.topology import topology_servers

__all__ = ["Proc", "kill_region", "server_status", "stack_status", "start_servers", "start_stack", "stop_servers",
           "stop_stack"]

T = TypeVar("T")
STATUS_TIMEOUT = 1.5  # `status` redraws every second in `up`: a region that does not answer is shown as down
JOBS_LIMIT = 10000


def start_servers(config: Config, servers: list[ManagedServer], timeout: float = 60.0) -> list[Proc]:
    """Start those of servers that are not running, wait until all of them are healthy and provision them
    (bucket, database); the started ones. MissingBinary before anything starts when a program is absent.
    A server that needs others first (start_after: a standby copied from its primary) starts in a later
    wave, once those are healthy."""
    for server in servers:
        server.check_installed()
    procs: list[Proc] = []
    healthy: set[str] = set()
    remaining = list(servers)
    while remaining:
        wave = [s for s in remaining if set(s.start_after()) <= healthy]
        if not wave:
            names = ", ".join(f"{s.name} (after {', '.join(s.start_after())})" for s in remaining)
            raise RegionflowError(f"servers wait for servers that are not in the topology: {names}")
        procs += _start_wave(config, wave, timeout)
        healthy |= {s.name for s in wave}
        remaining = [s for s in remaining if s.name not in healthy]
    return procs


def _start_wave(config: Config, servers: list[ManagedServer], timeout: float) -> list[Proc]:
    down = [s for s in servers if not server_alive(run_dir(config), s.name)]
    # Prepared and started side by side: initdb alone takes a second or two per PostgreSQL cluster.
    started = _each(down, lambda s: start_server(s, run_dir(config), log_dir(config)))
    procs = [Proc(p.server.name, p.pid, p.server.address, p.log) for p in started]
    by_name = {p.server.name for p in started}
    # The ones already running are waited for too: one may still be starting after a crash of `up`.
    survivors = [ServerProc(s, read_pid(run_dir(config), s.name) or 0, log_dir(config) / f"{s.name}.log")
                 for s in servers if s.name not in by_name]
    wait_servers_healthy([*started, *survivors], timeout)
    return procs


def _each(servers: list[ManagedServer], action: Callable[[ManagedServer], T]) -> list[T]:
    """action on every server at once (each waits on its own process); the results in order, or the
    first error once all are done."""
    if len(servers) < 2:
        return [action(s) for s in servers]
    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        futures = [pool.submit(action, s) for s in servers]
        wait(futures)
    return [f.result() for f in futures]


def stop_servers(config: Config, servers: list[ManagedServer], timeout: float = 30.0) -> list[str]:
    """Stop the regions' servers (SeaweedFS, PostgreSQL) together, then the shared ones (etcd) one by one;
    the ones that ran. (etcd members stopped together take seconds: the leader tries to hand over its
    leadership to followers that are going away.)"""
    def stop(s: ManagedServer) -> bool:
        return stop_server(run_dir(config), s.name, timeout, stop_signal=s.stop_signal)

    regional = [s for s in servers if s.region is not None]
    stopped = [s.name for s, ran in zip(regional, _each(regional, stop), strict=True) if ran]
    return stopped + [s.name for s in reversed(servers) if s.region is None and stop(s)]


def start_stack(config_path: Path, config: Config, timeout: float = 60.0) -> list[Proc]:
    """Start every server, region and the access point that is not already running (so `up` after a crash
    restarts just the missing ones), servers first; return the started ones once all are healthy."""
    already = running(config)
    secrets = load_secrets(config)  # fail early, before starting anything
    servers = topology_servers(config, secrets)
    to_start = [name for name in process_names(config) if name not in already]
    servers_down = [s.name for s in servers if s.name not in already]
    if not to_start and not servers_down:
        raise RegionflowError(f"the stack is already running ({', '.join(already)}); run `regionflow down` first")
    for name in to_start:
        check_tls(config, name)
    try:
        server_procs = start_servers(config, servers, timeout)
        if config.ledger is not None:
            from regionflow.workloads.ledger.schema import ensure_ledger

            ensure_ledger(config, secrets)
    except BaseException:
        if not already:
            stop_stack(config)
        raise
    procs = [start_process(config_path, config, name) for name in to_start]
    try:
        wait_healthy(procs, secrets.api_token, timeout, verify=config.tls_verify())
    except BaseException:
        if not already:  # a fresh start that failed leaves nothing behind; a restart keeps the survivors
            stop_stack(config)
        raise
    return server_procs + procs


def stop_stack(config: Config, timeout: float = 15.0) -> list[str]:
    """SIGTERM every process of the stack (SIGCONT first, in case one is stopped), SIGKILL stragglers,
    then stop the servers; the names of those that were running."""
    stopped = stop_all(config, timeout)
    try:
        servers = topology_servers(config, load_secrets(config))
    except RegionflowError:
        servers = []
    stopped += stop_servers(config, servers)
    # A server whose table was removed, or that the secrets no longer describe, still has its pid file.
    for leftover in sorted(running(config)):
        if stop_server(run_dir(config), leftover, timeout):
            stopped.append(leftover)
    return stopped


def kill_region(config: Config, region: str, timeout: float = 15.0) -> list[str]:
    """A regional outage: SIGKILL the region's process group and every server that belongs to the region
    (its SeaweedFS and PostgreSQL; etcd members are shared and stay up); the names of what was killed.
    NotRunning when the region process itself is not running."""
    from regionflow.region.processes import kill_process

    kill_process(config, region, timeout)
    killed = [region]
    for s in topology_servers(config, load_secrets(config)):
        if s.region == region and stop_server(run_dir(config), s.name, timeout, kill=True):
            killed.append(s.name)
    return killed


def server_status(config: Config) -> list[dict[str, Any]]:
    """Each server of the topology: its name, kind, region, address, whether it runs and is healthy."""
    try:
        servers = topology_servers(config, load_secrets(config))
    except RegionflowError as exc:
        return [{"name": "servers", "error": str(exc)}]

    def entry(s: ManagedServer) -> dict[str, Any]:
        out = s.describe()
        out["running"] = server_alive(run_dir(config), s.name)
        reason = s.probe() if out["running"] else "not running"
        out["healthy"] = reason is None
        out["detail"] = reason or "ok"
        if reason is None:
            try:
                out.update(s.details())
            except RegionflowError as exc:
                out["detail"] = str(exc)
        return out

    return _each(servers, entry)


def _region_status(api: ApiClient, entry: dict[str, Any], replication: list[dict[str, Any]]) -> None:
    """Fill entry from one region's API; stops at the first question it does not answer."""
    try:
        deep = api.health_deep()
        entry["healthy"] = True
        entry["deep"] = deep.get("status")
        entry["faults"] = [f["kind"] for f in deep.get("faults", [])]
        entry["executor"] = deep.get("executor")
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
    out["servers"] = server_status(config)
    return out
