"""The processes of a local stack (one per region + the access point): pid files, signals, start, stop and
waiting for health.

`regionflow up` (region/stack.py), the DR drill and the Chaos Toolkit actions all find, signal, start and
stop these processes through this one module. Every process runs in its own session (process group), its
pid file at ``<data_dir>/run/<name>.pid`` names the group leader, and its output goes to
``<data_dir>/logs/<name>.log``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from regionflow.api.client import ApiClient, ApiError
from regionflow.config import Config
from regionflow.config.tls import Verify
from regionflow.errors import RegionflowError
from regionflow.polling import PollTimeout, poll_until
from regionflow.servers.runner import pid_alive

ACCESS_POINT = "access-point"


class NotRunning(RegionflowError):
    """The named process of the stack has no pid file or is not alive."""


@dataclass
class Proc:
    """One started process of the stack: its name, pid (its process group), URL and log file."""

    name: str
    pid: int
    url: str
    log: Path


def run_dir(config: Config) -> Path:
    """The directory of the stack's pid files."""
    return Path(config.data_dir) / "run"


def log_dir(config: Config) -> Path:
    """The directory of the stack's process logs."""
    return Path(config.data_dir) / "logs"


def process_names(config: Config) -> list[str]:
    """Every process of the stack: the regions, then the access point."""
    return [*config.region_names, ACCESS_POINT]


def read_pid(config: Config, name: str) -> int:
    """The pid in name's pid file; NotRunning when there is none."""
    pidfile = run_dir(config) / f"{name}.pid"
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        raise NotRunning(f"{name} is not running (no pid file at {pidfile})") from None


def is_running(config: Config, name: str) -> bool:
    """Whether name has a pid file naming a live process."""
    try:
        return pid_alive(read_pid(config, name))
    except NotRunning:
        return False


def running(config: Config) -> dict[str, int]:
    """Processes of this stack that are alive, from the pid files (stale pid files are removed)."""
    alive = {}
    for pidfile in sorted(run_dir(config).glob("*.pid")):
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            continue
        if pid_alive(pid):
            alive[pidfile.stem] = pid
        else:
            pidfile.unlink(missing_ok=True)
    return alive


def missing(config: Config) -> list[str]:
    """The stack's processes that are not running, in process_names order."""
    alive = running(config)
    return [name for name in process_names(config) if name not in alive]


def signal_process(config: Config, name: str, sig: signal.Signals) -> int:
    """Send sig to name's whole process group (gateway, orchestrator, workers, replicators); its pid.

    NotRunning when there is no pid file or the group is gone."""
    pid = read_pid(config, name)
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        raise NotRunning(f"{name} (pid {pid}) is not running") from None
    return pid


def wait_exited(config: Config, name: str, timeout: float, interval: float = 0.05) -> None:
    """Wait until name's process has exited (or has no pid file); RegionflowError naming the pid still
    alive after timeout seconds."""
    try:
        poll_until(lambda: not is_running(config, name), timeout=timeout, interval=interval,
                   what=f"{name} to exit")
    except PollTimeout:
        pid = read_pid(config, name)
        raise RegionflowError(f"{name} (pid {pid}) is still running after {timeout:g}s") from None


def kill_process(config: Config, name: str, timeout: float = 15.0) -> int:
    """SIGKILL name's process group and wait until it is gone; its pid."""
    pid = signal_process(config, name, signal.SIGKILL)
    wait_exited(config, name, timeout)
    return pid


def _commands(config_path: Path, config: Config) -> list[tuple[str, list[str], str]]:
    py = sys.executable
    cmds = [(r.name, [py, "-m", "regionflow.region.server", "--config", str(config_path), "--region", r.name],
             config.region_url(r.name)) for r in config.regions]
    cmds.append((ACCESS_POINT, [py, "-m", "regionflow.region.access_point", "--config", str(config_path)],
                 config.access_point_url))
    return cmds


def check_tls(config: Config, name: str) -> None:
    """ConfigError when name's listener has TLS files that cannot be served (the process would exit)."""
    if name == ACCESS_POINT:
        config.access_point.server_tls()
    elif name in config.region_names:
        config.region(name).server_tls()


def start_process(config_path: Path, config: Config, name: str) -> Proc:
    """Start one process of the stack (a region or the access point) in the background, in its own session
    so a signal to its group reaches its workers and a Ctrl-C of the caller does not."""
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


def _answers_health(proc: Proc, token: str, verify: Verify) -> bool:
    try:
        with ApiClient(proc.url, token, target=proc.name, timeout=1.0, verify=verify) as api:
            api.health()
        return True
    except ApiError:
        return False


def wait_healthy(procs: list[Proc], token: str, timeout: float = 60.0, *, verify: Verify = True) -> None:
    """Wait until every process answers /health (over TLS verified with verify for https:// ones);
    RegionflowError naming the laggards (and their log), or at once naming a process that exited during
    start-up."""
    pending = {p.name: p for p in procs}

    def all_healthy() -> bool:
        for name, p in list(pending.items()):
            if not pid_alive(p.pid):
                tail = p.log.read_text(errors="replace").strip().splitlines()[-3:] if p.log.exists() else []
                raise RegionflowError(f"{name} exited during start-up; see {p.log}: {' | '.join(tail)}")
            if _answers_health(p, token, verify):
                del pending[name]
        return not pending

    try:
        poll_until(all_healthy, timeout=timeout, interval=0.2, what="the stack to be healthy")
    except PollTimeout:
        logs = ", ".join(str(p.log) for p in pending.values())
        raise RegionflowError(f"not healthy after {timeout:g}s: {', '.join(pending)} (see {logs})") from None


def stop_all(config: Config, timeout: float = 15.0) -> list[str]:
    """SIGTERM every region process and the access point (SIGCONT first, in case one is stopped), SIGKILL
    stragglers; the names of the processes that were running. The servers are stopped by region/stack.py."""
    names = set(process_names(config))
    procs = {name: pid for name, pid in running(config).items() if name in names}
    for pid in procs.values():
        for sig in (signal.SIGCONT, signal.SIGTERM):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
    with contextlib.suppress(PollTimeout):  # stragglers are killed below
        poll_until(lambda: not any(pid_alive(pid) for pid in procs.values()), timeout=timeout, interval=0.1,
                   what="the stack to stop")
    for pid in procs.values():
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    for name in procs:
        (run_dir(config) / f"{name}.pid").unlink(missing_ok=True)
    return sorted(procs)
