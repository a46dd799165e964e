"""Run ManagedServers as background processes: start with a pid file and a log, wait for health, stop.

Each server runs in its own session (process group) so that a signal to the group reaches every process
it forked, and a Ctrl-C of the caller reaches none. The pid file ``<run_dir>/<name>.pid`` names the
group leader. Used by `regionflow up`/`down`, the drill, the faults (SIGSTOP of a store) and the test
fixtures.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from regionflow.polling import PollTimeout, poll_until
from regionflow.servers.base import ManagedServer, ServerError, run_as_kwargs

__all__ = ["ServerProc", "pid_alive", "read_pid", "server_alive", "signal_server", "start_server", "stop_server",
           "wait_servers_healthy"]


@dataclass
class ServerProc:
    """A started server: the server, its process group's pid and its log file."""

    server: ManagedServer
    pid: int
    log: Path


def pid_alive(pid: int) -> bool:
    """Whether pid is a live process; a zombie counts as dead (and is reaped when it is our child)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def read_pid(run_dir: Path, name: str) -> int | None:
    """The pid in name's pid file, or None when there is none."""
    try:
        return int((run_dir / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def server_alive(run_dir: Path, name: str) -> bool:
    """Whether name's pid file names a live (non-zombie) process."""
    pid = read_pid(run_dir, name)
    return pid is not None and pid_alive(pid)


def start_server(server: ManagedServer, run_dir: Path, log_dir: Path) -> ServerProc:
    """Prepare server and start it in the background (as server.run_as() when set); does not wait.

    MissingBinary when its program is not installed; ServerError when preparing it fails."""
    server.check_installed()
    server.prepare()
    run_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{server.name}.log"
    with log_path.open("ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {server.name}\n".encode())
        log.flush()
        try:
            popen = subprocess.Popen(server.command(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, cwd=server.data_dir,
                                     **run_as_kwargs(server.run_as()))
        except OSError as exc:
            raise ServerError(f"cannot start {server.name}: {exc}") from None
    (run_dir / f"{server.name}.pid").write_text(str(popen.pid))
    return ServerProc(server, popen.pid, log_path)


def _tail(log: Path, lines: int = 3) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def wait_servers_healthy(procs: Iterable[ServerProc], timeout: float = 60.0) -> None:
    """Wait until every server answers its probe, then provision each; ServerError naming a server that
    exited during start-up (with its log's last lines) or is still unhealthy after timeout seconds."""
    pending = {p.server.name: p for p in procs}
    done: list[ServerProc] = []
    reasons: dict[str, str] = {}

    def all_healthy() -> bool:
        for name, p in list(pending.items()):
            if not pid_alive(p.pid):
                raise ServerError(f"{name} exited during start-up; see {p.log}: {_tail(p.log)}")
            reason = p.server.probe()
            if reason is None:
                done.append(pending.pop(name))
            else:
                reasons[name] = reason
        return not pending

    try:
        poll_until(all_healthy, timeout=timeout, interval=0.2, what="the servers to be healthy")
    except PollTimeout:
        detail = "; ".join(f"{n}: {reasons.get(n, '?')} (log {p.log})" for n, p in pending.items())
        raise ServerError(f"servers not healthy after {timeout:g}s: {detail}") from None
    for p in done:
        p.server.provision()


def signal_server(run_dir: Path, name: str, sig: signal.Signals) -> int | None:
    """Send sig to name's process group; its pid, or None when it is not running."""
    pid = read_pid(run_dir, name)
    if pid is None or not pid_alive(pid):
        return None
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return None
    return pid


def stop_server(run_dir: Path, name: str, timeout: float = 30.0, *, kill: bool = False,
                stop_signal: signal.Signals = signal.SIGTERM) -> bool:
    """Stop name's process group: SIGCONT then stop_signal (the server's ManagedServer.stop_signal; SIGKILL
    when kill), SIGKILL after timeout seconds; removes the pid file. Whether it was running."""
    pid = read_pid(run_dir, name)
    pidfile = run_dir / f"{name}.pid"
    if pid is None or not pid_alive(pid):
        pidfile.unlink(missing_ok=True)
        return False
    for sig in (signal.SIGCONT, signal.SIGKILL if kill else stop_signal):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
    try:
        poll_until(lambda: not pid_alive(pid), timeout=timeout, interval=0.05, what=f"{name} to stop")
    except PollTimeout:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(PollTimeout):
            poll_until(lambda: not pid_alive(pid), timeout=10.0, interval=0.05, what=f"{name} to die")
    # Children that left the group's leader (e.g. PostgreSQL backends) die with their group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)
    return True
