"""Starting, stopping and inspecting the processes of a local stack (one per region + the access point)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from regionflow.config import Config, load_secrets
from regionflow.control import open_control
from regionflow.errors import RegionflowError

ACCESS_POINT = "access-point"


@dataclass
class Proc:
    name: str
    pid: int
    url: str
    log: Path


def run_dir(config: Config) -> Path:
    return Path(config.data_dir) / "run"


def log_dir(config: Config) -> Path:
    return Path(config.data_dir) / "logs"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def running(config: Config) -> dict[str, int]:
    """Processes of this stack that are alive, from the pid files."""
    alive = {}
    for pidfile in sorted(run_dir(config).glob("*.pid")):
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            continue
        if _pid_alive(pid):
            alive[pidfile.stem] = pid
        else:
            pidfile.unlink(missing_ok=True)
    return alive


def _commands(config_path: Path, config: Config) -> list[tuple[str, list[str], str]]:
    py = sys.executable
    cmds = [(r.name, [py, "-m", "regionflow.region.server", "--config", str(config_path), "--region", r.name],
             config.region_url(r.name)) for r in config.regions]
    cmds.append((ACCESS_POINT, [py, "-m", "regionflow.region.access_point", "--config", str(config_path)],
                 config.access_point_url))
    return cmds


def start_process(config_path: Path, config: Config, name: str) -> Proc:
    """Start one process of the stack (a region or the access point) in the background."""
    for proc_name, cmd, url in _commands(config_path, config):
        if proc_name == name:
            log_dir(config).mkdir(parents=True, exist_ok=True)
            run_dir(config).mkdir(parents=True, exist_ok=True)
            log_path = log_dir(config) / f"{name}.log"
            with log_path.open("ab") as log:
                popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
            (run_dir(config) / f"{name}.pid").write_text(str(popen.pid))
            return Proc(name, popen.pid, url, log_path)
    raise RegionflowError(f"no process named {name!r} in this stack")


def wait_healthy(procs: list[Proc], timeout: float = 60.0) -> None:
    """Wait until every process answers /health; RegionflowError naming the laggards (and their log)."""
    deadline = time.monotonic() + timeout
    pending = {p.name: p for p in procs}
    while pending:
        for name, p in list(pending.items()):
            if not _pid_alive(p.pid):
                tail = p.log.read_text(errors="replace").strip().splitlines()[-3:] if p.log.exists() else []
                raise RegionflowError(f"{name} exited during start-up; see {p.log}: {' | '.join(tail)}")
            try:
                if httpx.get(f"{p.url}/health", timeout=1.0).status_code == 200:
                    del pending[name]
            except httpx.HTTPError:
                pass
        if pending and time.monotonic() > deadline:
            logs = ", ".join(str(p.log) for p in pending.values())
            raise RegionflowError(f"not healthy after {timeout:g}s: {', '.join(pending)} (see {logs})")
        if pending:
            time.sleep(0.2)


def start_stack(config_path: Path, config: Config, timeout: float = 60.0) -> list[Proc]:
    """Start every region and the access point that is not already running (so `up` after a crash
    restarts just the missing ones); return the started ones once all are healthy."""
    already = running(config)
    missing = [name for name, _cmd, _url in _commands(config_path, config) if name not in already]
    if not missing:
        raise RegionflowError(f"the stack is already running ({', '.join(already)}); run `regionflow down` first")
    load_secrets(config)  # fail early, before starting anything
    procs = [start_process(config_path, config, name) for name in missing]
    try:
        wait_healthy(procs, timeout)
    except BaseException:
        if not already:
            stop_stack(config)
        raise
    return procs


def stop_stack(config: Config, timeout: float = 15.0) -> list[str]:
    """SIGTERM every process of the stack (SIGCONT first, in case one is stopped), SIGKILL stragglers."""
    procs = running(config)
    for pid in procs.values():
        for sig in (signal.SIGCONT, signal.SIGTERM):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_pid_alive(pid) for pid in procs.values()):
        time.sleep(0.1)
    for pid in procs.values():
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    for name in procs:
        (run_dir(config) / f"{name}.pid").unlink(missing_ok=True)
    return sorted(procs)


def stack_status(config: Config) -> dict:
    """Health of each region, the routing control, and replication per direction."""
    secrets = load_secrets(config)
    headers = {"Authorization": f"Bearer {secrets.api_token}"}
    out: dict = {"regions": {}, "replication": [], "control": None, "processes": running(config)}
    try:
        c = open_control(config.control).get()
        out["control"] = {"active_region": c.active_region, "epoch": c.epoch}
    except RegionflowError as exc:
        out["control"] = {"error": str(exc)}
    with httpx.Client(timeout=1.5, headers=headers) as http:
        for r in config.regions:
            url = config.region_url(r.name)
            entry: dict = {"url": url, "healthy": False, "deep": None, "jobs": None}
            try:
                deep = http.get(f"{url}/health/deep")
                entry["healthy"] = True
                entry["deep"] = deep.json().get("status")
                entry["faults"] = [f["kind"] for f in deep.json().get("faults", [])]
                jobs = http.get(f"{url}/jobs", params={"limit": 10000}).json()["jobs"]
                counts: dict[str, int] = {}
                for j in jobs:
                    counts[j["status"]] = counts.get(j["status"], 0) + 1
                entry["jobs"] = counts
                out["replication"].extend(http.get(f"{url}/replication").json()["directions"])
                evaluation = http.get(f"{url}/plans/evaluation").json()
                entry["plan_evaluation"] = {k: evaluation.get(k) for k in ("status", "evaluated_at")}
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            entry["active"] = bool(out["control"] and out["control"].get("active_region") == r.name)
            out["regions"][r.name] = entry
        try:
            out["access_point"] = {"url": config.access_point_url,
                                   "healthy": http.get(f"{config.access_point_url}/health").status_code == 200}
        except httpx.HTTPError:
            out["access_point"] = {"url": config.access_point_url, "healthy": False}
    return out
